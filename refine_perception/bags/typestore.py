"""The rosbags type store that knows refine_msgs: Jazzy's standard types plus our .msg files, so bags we
write carry full message definitions (any rosbag2 reader, Foxglove included, can decode them) and bags
recorded by `ros2 bag record` decode here without ROS."""

from __future__ import annotations

import functools
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "refine_msgs"


def msg_dir() -> Path:
    """refine_msgs/msg: the installed interface package's share folder, else the source tree's."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        folder = Path(get_package_share_directory(PACKAGE)) / "msg"
        if folder.is_dir():
            return folder
    except (ImportError, LookupError, OSError, PackageNotFoundError):
        pass
    folder = Path(__file__).resolve().parents[2] / PACKAGE / "msg"
    if not folder.is_dir():
        raise FileNotFoundError(f"no {PACKAGE} message definitions: not installed and no {folder}")
    return folder


@functools.cache
def typestore() -> Typestore:
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
