"""ament_python package refine_perception (the repository root)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "refine_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/training", glob("config/training/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.safetensors") + glob("models/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="refine_perception developers",
    maintainer_email="dev@refine-perception.org",
    description="Camera perception for robots and vehicles (lanes, segmentation, instances).",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "refine-perception = refine_perception.cli.main:main",
            "refine-train = refine_perception.training.cli:main",
            "camera_source = refine_perception.ros.camera_source:main",
            "image_converter = refine_perception.ros.image_converter:main",
            "topic_monitor = refine_perception.ros.topic_monitor:main",
            "lane_detector = refine_perception.ros.lane_detector:main",
            "lane_scorer = refine_perception.ros.lane_scorer:main",
            "bag_player = refine_perception.ros.bag_player:main",
            "instance_segmenter = refine_perception.ros.instance_segmenter:main",
        ],
    },
)
