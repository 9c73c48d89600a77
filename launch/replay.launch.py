"""Bag replay: our bag_player plays a bag with /clock into the lane detector (on sim time) and records its
lanes; then `refine-perception evaluate BAG --results RESULT_BAG --out REPORT_DIR` scores them.

    ros2 launch refine_perception replay.launch.py bag:=drive.mcap result_bag:=/tmp/lanes mode:=lossless \
        transport:=compressed
    refine-perception evaluate drive.mcap --results /tmp/lanes --out report/

With a ROS install, `ros2 bag play --clock BAG` and `ros2 bag record -o RESULT /lanes` can replace the
player (realtime only: ros2 bag play does not wait for results); `refine-perception replay` runs the same
graph without ROS launch, plus the evaluation. Run with --show-args to list the arguments.
"""

from refine_perception.graphs import launch_description


def generate_launch_description():
    return launch_description("replay")
