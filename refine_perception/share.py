"""Where the package's data lies (config/, models/, launch/, and refine_msgs' msg/), found without ROS
running: through the ament index when a ROS environment is sourced, else in this interpreter's prefix (the
./dev venv), else in the source tree. ROS-free, so the command line finds the default models without rclpy.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "refine_perception"
LANE_MODEL = "clrnet_r18_synthetic.safetensors"
INSTANCE_MODEL = "discriminative_sticks.safetensors"
STREET_MODEL = "lrn_r18_street.safetensors"
BOUNDARY_MODELS = {"sticks": "bpr_sticks.safetensors", "street": "bpr_street.safetensors"}  # by task
_SOURCE_TREE = Path(__file__).resolve().parents[1]


def share_dir(package: str = PACKAGE) -> Path:
    """share/<package> of the installed package (the source tree's folder where it is not installed)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError, PackageNotFoundError):
        pass
    for folder in (Path(sys.prefix) / "share" / package, _SOURCE_TREE if package == PACKAGE else _SOURCE_TREE / package):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"{package} is not installed (no ament index entry, no {sys.prefix}/share/{package}) "
                            "and this is no source tree")


def shipped_model(file_name: str) -> Path:
    """A default model file shipped in share/refine_perception/models (the source tree's models/)."""
    return share_dir() / "models" / file_name


def config_dir() -> Path:
    """config/ of the installed package: the same params files the launch files use."""
    return share_dir() / "config"
