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
            "camera_source = refine_perception.ros.executables:camera_source",
            "image_converter = refine_perception.ros.executables:image_converter",
            "topic_monitor = refine_perception.ros.executables:topic_monitor",
            "lane_detector = refine_perception.ros.executables:lane_detector",
            "lane_scorer = refine_perception.ros.executables:lane_scorer",
            "bag_player = refine_perception.ros.executables:bag_player",
            "instance_segmenter = refine_perception.ros.executables:instance_segmenter",
            "street_segmenter = refine_perception.ros.executables:street_segmenter",
        ],
    },
)
