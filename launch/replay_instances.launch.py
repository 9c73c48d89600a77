"""Instance replay: our bag_player plays a sticks bag (camera, CameraInfo, depth, /ground_truth/instances)
with /clock into the instance segmenter (on sim time) and records its instances and grasps; then
`refine-perception replay BAG --results RESULT_BAG --out REPORT_DIR` scores them.

    ros2 launch refine_perception replay_instances.launch.py bag:=sticks.mcap result_bag:=/tmp/instances \
        transport:=compressed
    refine-perception replay sticks.mcap --results /tmp/instances --out report/

With a ROS install, `ros2 bag play --clock BAG` and `ros2 bag record -o RESULT /instances` can replace the
player (realtime only). Run with --show-args to list the arguments.
"""

from refine_perception.graphs import launch_description


def generate_launch_description():
    return launch_description("replay_instances")
