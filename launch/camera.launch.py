"""Camera source -> image converter, with a topic monitor printing what flows.

    ros2 launch refine_perception camera.launch.py source:=/path/to/video.mp4 rate_hz:=15.0

Without a ROS install, `refine-perception launch camera source:=...` runs the same graph in one process.
The graph itself is described in refine_perception/graphs.py; run with --show-args to list the arguments.
"""

from refine_perception.graphs import launch_description


def generate_launch_description():
    return launch_description("camera")
