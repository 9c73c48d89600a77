"""ROS-free core: image and mask codecs, frame sources, statistics. Never imports rclpy."""
