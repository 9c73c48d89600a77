"""image_converter: decodes a camera's Image (any supported encoding: Bayer, YUV, mono16, ...) or
CompressedImage into a plain raw image, the role image_transport's republish and image_proc's debayer
play in a ROS install. Malformed frames are logged, counted in /diagnostics and skipped."""

from __future__ import annotations

from typing import Any

from sensor_msgs.msg import CompressedImage, Image

from refine_perception.ros.image_messages import compressed_to_numpy, image_to_numpy, numpy_to_image
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import INPUT_PARAMS, QOS_CHOICES, Param, qos_from_name


class ImageConverter(PerceptionNode):
    TASK = "image converter"
    DEFAULT_NAME = "image_converter"
    PARAMS = (
        *INPUT_PARAMS,
        Param("transport", "compressed", "Input: image_raw (raw) or image_raw/compressed (compressed)",
              choices=("raw", "compressed"), read_only=True),
        Param("encoding", "bgr8", "Encoding of the published image", choices=("bgr8", "rgb8", "mono8")),
        Param("output_qos", "reliable", "QoS of the published image", choices=QOS_CHOICES, read_only=True),
        Param("output_depth", 1, "Queue depth of the published image", min=1, max=100, read_only=True),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        p = self.params
        self._pub = self.create_publisher(Image, "image", qos_from_name(p.output_qos, p.output_depth))
        if p.transport == "raw":
            self.subscribe_frames(Image, "image_raw", self._on_raw)
        else:
            self.subscribe_frames(CompressedImage, "image_raw/compressed", self._on_compressed)

    def _on_raw(self, msg: Image) -> None:
        self._publish(image_to_numpy(msg, self.params.encoding, self.params.max_image_pixels), msg)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._publish(compressed_to_numpy(msg, self.params.encoding, self.params.max_image_pixels), msg)

    def _publish(self, image: Any, source: Any) -> None:
        out = numpy_to_image(image, self.params.encoding)
        out.header = source.header
        self._pub.publish(out)


def main(args: list[str] | None = None) -> int:
    return node_main(ImageConverter, args)
