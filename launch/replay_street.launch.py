"""Street replay: our bag_player plays a street bag (camera, CameraInfo, /ground_truth/labels and
/ground_truth/instance_ids) with /clock into the street segmenter (on sim time) and records its label
images and instances; then `refine-perception replay BAG --results RESULT_BAG --out REPORT_DIR` scores them.

    ros2 launch refine_perception replay_street.launch.py bag:=street.mcap result_bag:=/tmp/street \
        transport:=compressed
    refine-perception replay street.mcap --results /tmp/street --out report/

With a ROS install, `ros2 bag play --clock BAG` and `ros2 bag record -o RESULT /labels /instances` can replace
the player (realtime only). Run with --show-args to list the arguments.
"""

from refine_perception.graphs import launch_description


def generate_launch_description():
    return launch_description("replay_street")
