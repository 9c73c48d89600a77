"""Lane detection: camera topic in, refine_msgs/LaneArray + RViz markers + debug overlay out.

    ros2 launch refine_perception lanes.launch.py                                  # synthetic drive demo
    ros2 launch refine_perception lanes.launch.py camera:=false image_topic:=/front/image_raw \
        camera_info_topic:=/front/camera_info backend:=onnxruntime use_sim_time:=true

Without a ROS install, `refine-perception launch lanes ...` runs the same graph in one process.
The graph is described in refine_perception/graphs.py; run with --show-args to list the arguments
(lane_detector_params_file:=my.yaml replaces config/lanes.yaml).
"""

from refine_perception.graphs import launch_description


def generate_launch_description():
    return launch_description("lanes")
