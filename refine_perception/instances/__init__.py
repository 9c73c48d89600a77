"""ROS-free instance segmentation post-processing and grasps."""
