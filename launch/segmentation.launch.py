"""Street segmentation: camera topic (+ CameraInfo) in; a mono8 label image of Cityscapes label ids, its
latched refine_msgs/ClassMap, car and person instances (refine_msgs/InstanceArray with track ids), RViz
outlines and a colour overlay out.

    ros2 launch refine_perception segmentation.launch.py                              # synthetic street demo
    ros2 launch refine_perception segmentation.launch.py source:="synthetic:street?seed=5&frames=100" rate_hz:=0.0
    ros2 launch refine_perception segmentation.launch.py camera:=false image_topic:=/front/image_raw \
        camera_info_topic:=/front/camera_info

Without a ROS install, `refine-perception launch segmentation ...` runs the same graph in one process.
The graph is described in refine_perception/graphs.py; run with --show-args to list the arguments
(street_segmenter_params_file:=my.yaml replaces config/street_segmenter.yaml).
"""

from refine_perception.graphs import launch_description


def generate_launch_description():
    return launch_description("segmentation")
