"""The rosbags type store that knows refine_msgs: Jazzy's standard types plus our .msg files, so bags we
write carry full message definitions (any rosbag2 reader, Foxglove included, can decode them) and bags
recorded by `ros2 bag record` decode here without ROS."""

from __future__ import annotations

import functools
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from refine_perception.share import share_dir

PACKAGE = "refine_msgs"


def msg_dir() -> Path:
    """refine_msgs/msg: the installed interface package's share folder, else the source tree's."""
    folder = share_dir(PACKAGE) / "msg"
    if not folder.is_dir():
        raise FileNotFoundError(f"no {PACKAGE} message definitions in {folder}")
    return folder


@functools.cache
def typestore() -> Typestore:
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
