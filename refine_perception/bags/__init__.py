"""rosbag2 files (MCAP or sqlite3) without a ROS install: writing our datasets as bags, reading robot
bags, and the message types of both (ROS 2 Jazzy's plus refine_msgs, read from its .msg files)."""
