"""refine_perception: camera perception for ROS 2 with a ROS-free core."""

__version__ = "0.1.0"
