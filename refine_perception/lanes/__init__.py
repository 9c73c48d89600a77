"""ROS-free lane post-processing: road-plane projection, polynomial fits and track ids for the lanes node."""
