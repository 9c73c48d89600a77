"""Rendered sticks scenes as bags, and bags as instance frames.

An instance bag holds per frame, all under the image's header: the camera image (Image bgr8 or JPEG
CompressedImage), its CameraInfo (the scene's K), the depth image aligned with it (Image 16UC1, whole
millimetres along the optical axis, 0 unknown: the raw form of REP 118 that depth cameras publish and
our image codec reads) and the ground truth as refine_msgs/InstanceArray on
/ground_truth/instances (instances.sticks_truth: visible masks, whole-stick boxes, the exact grasps of
the free sticks). The depth is there because every rendered scene has its own camera height: a node
with one table-distance parameter would put every grasp of other frames at the wrong scale, while the
depth gives each frame's, as an RGB-D camera over a pick-and-place table does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from refine_msgs.msg import InstanceArray
from refine_perception.bags.frames import (
    CAMERA_INFO_TOPIC,
    IMAGE_TOPIC,
    Stamp,
    check_transport,
    scan_bag,
    stamped,
    write_camera_frame,
)
from refine_perception.bags.reader import BagError
from refine_perception.bags.writer import BagWriter
from refine_perception.data.synthetic.sticks import SticksScene
from refine_perception.instances.sticks_truth import scene_truth
from refine_perception.ros.image_messages import numpy_to_image
from refine_perception.ros.instance_messages import instance_array

TRUTH_INSTANCES_TOPIC = "/ground_truth/instances"
DEPTH_TOPIC = "/camera/depth/image_raw"


def write_instance_bag(path: str | Path, scenes: Iterable[SticksScene], storage: str = "mcap",
                       transport: str = "compressed", fps: float = 10.0, jpeg_quality: int = 90,
                       frame_id: str = "camera_optical_frame", image_topic: str = IMAGE_TOPIC,
                       camera_info_topic: str = CAMERA_INFO_TOPIC, depth_topic: str | None = DEPTH_TOPIC,
                       overwrite: bool = False) -> int:
    """Write `scenes` as an instance bag (no depth images with `depth_topic` None); returns the number of
    frames. Log times equal the header stamps."""
    check_transport(transport)
    count = 0
    with BagWriter(path, storage, overwrite=overwrite) as bag:
        for scene, header, time_ns in stamped(scenes, fps, frame_id):
            bag.write(TRUTH_INSTANCES_TOPIC, instance_array(header, scene.image.shape[:2], scene_truth(scene)), time_ns)
            if depth_topic is not None:
                bag.write(depth_topic, numpy_to_image(scene.depth_millimetres(), "16UC1", header), time_ns)
            write_camera_frame(bag, scene.image, scene.camera, header, time_ns, transport, jpeg_quality, image_topic,
                               camera_info_topic)
            count += 1
    return count


@dataclass
class InstanceBag:
    """What evaluation needs from an instance bag: the camera topics, the image stamps in recorded order
    and the ground truth by stamp; `depth_topic` is None when the bag has no such topic."""

    path: Path
    image_topic: str
    compressed: bool  # CompressedImage, else Image
    camera_info_topic: str | None
    depth_topic: str | None
    stamps: list[Stamp]
    truth: dict[Stamp, InstanceArray]
    errors: list[BagError]


def read_instance_bag(path: str | Path, image_topic: str | None = None, camera_info_topic: str | None = None,
                      truth_topic: str = TRUTH_INSTANCES_TOPIC, depth_topic: str = DEPTH_TOPIC) -> InstanceBag:
    """One pass over the bag: image stamps of every image topic, ground truth decoded; the depth topic
    is not a candidate for the camera image."""
    scan = scan_bag(path, (truth_topic,))
    image_topic, compressed, camera_info_topic, stamps = scan.camera(image_topic, camera_info_topic)
    return InstanceBag(Path(path), image_topic, compressed, camera_info_topic,
                       depth_topic if depth_topic in scan.topics else None, stamps, scan.decoded[truth_topic],
                       scan.errors)
