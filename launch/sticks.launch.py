"""Pick-and-place sticks: camera topic (+ CameraInfo, depth) in, refine_msgs/InstanceArray with grasps +
RViz markers + debug overlay out.

    ros2 launch refine_perception sticks.launch.py                                 # synthetic sticks demo
    ros2 launch refine_perception sticks.launch.py source:="synthetic:sticks?seed=5&frames=100" rate_hz:=0.0
    ros2 launch refine_perception sticks.launch.py camera:=false image_topic:=/top/color/image_raw \
        camera_info_topic:=/top/color/camera_info depth_topic:=/top/aligned_depth_to_color/image_raw

Without a ROS install, `refine-perception launch sticks ...` runs the same graph in one process.
The graph is described in refine_perception/graphs.py; run with --show-args to list the arguments
(instance_segmenter_params_file:=my.yaml replaces config/instances.yaml).
"""

from refine_perception.graphs import launch_description


def generate_launch_description():
    return launch_description("sticks")
