"""lane_scorer: scores the lanes a detector publishes against ground truth published with the same stamps
(the synthetic drive's ground_truth/lanes, or a bag's), live: CULane F1@50/F1@75 (official protocol),
lane-type accuracy and tracking id switches; optionally writes a PNG strip of the detector's debug overlay.

Pairs are made by header stamp; whatever is still unpaired at the end is reported, not silently lost.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from refine_msgs.msg import LaneArray
from refine_perception.data.preview import grid
from refine_perception.evaluation.lanes import score_lane_frames
from refine_perception.ros.image_messages import image_to_numpy
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import Param

Stamp = tuple[int, int]
MAX_THUMBNAILS = 128


def _stamp(msg: Any) -> Stamp:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


class LaneScorer(PerceptionNode):
    TASK = "lane scorer"
    DEFAULT_NAME = "lane_scorer"
    PARAMS = (
        Param("cut_height_ratio", 270 / 590, "Rows above this fraction of the height are not scored (CULane's "
              "270/590: predictions are sampled from the crop line down)", min=0.0, max=0.95),
        Param("strip_path", "", "Write a PNG strip of debug overlays here when the node stops (empty: none)"),
        Param("strip_frames", 6, "Overlays in the strip, spread over the run", min=1, max=64),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self._lock = threading.Lock()
        self._pending: dict[str, dict[Stamp, LaneArray]] = {"pred": {}, "truth": {}}
        self.pairs: list[tuple[LaneArray, LaneArray]] = []
        self.overlays: list[np.ndarray] = []
        self._overlay_count = 0
        self._overlay_step = 1
        self.create_subscription(LaneArray, "lanes", lambda m: self._add("pred", m), reliable)
        self.create_subscription(LaneArray, "ground_truth/lanes", lambda m: self._add("truth", m), reliable)
        if self.params.strip_path:
            self.create_subscription(Image, "debug_image", self._on_overlay, QoSProfile(depth=1))

    def _add(self, side: str, msg: LaneArray) -> None:
        other = "truth" if side == "pred" else "pred"
        stamp = _stamp(msg)
        with self._lock:
            partner = self._pending[other].pop(stamp, None)
            if partner is None:
                self._pending[side][stamp] = msg
                return
            self.pairs.append((msg, partner) if side == "pred" else (partner, msg))
        self.counters.count_received()
        self.counters.count_processed()

    def _on_overlay(self, msg: Image) -> None:
        # thumbnails of every `_overlay_step`-th overlay, thinned by half whenever MAX_THUMBNAILS are held, so
        # the strip can pick evenly spread frames at the end of a run of any length in bounded memory
        self._overlay_count += 1
        if (self._overlay_count - 1) % self._overlay_step:
            return
        image = image_to_numpy(msg, desired="bgr8")
        scale = 480 / image.shape[1]
        thumbnail = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        with self._lock:
            self.overlays.append(thumbnail)
            if len(self.overlays) >= MAX_THUMBNAILS:
                self.overlays = self.overlays[::2]
                self._overlay_step *= 2

    @property
    def unpaired(self) -> dict[str, int]:
        with self._lock:
            return {side: len(items) for side, items in self._pending.items()}

    def scores(self) -> dict[str, Any]:
        """The figures over every pair so far."""
        with self._lock:
            pairs = sorted(self.pairs, key=lambda pair: _stamp(pair[0]))
        if not pairs:
            return {"frames_scored": 0, "unpaired": self.unpaired}
        result = score_lane_frames([truth for _, truth in pairs], [pred for pred, _ in pairs],
                                   cut_ratio=self.params.cut_height_ratio)
        return {
            "frames_scored": len(pairs),
            "F1@50": round(result.culane.f1(0.5), 4),
            "F1@75": round(result.culane.f1(0.75), 4),
            "type_accuracy": None if result.type_accuracy is None else round(result.type_accuracy, 4),
            "id_switches": result.id_switches,
            "unpaired": self.unpaired,
        }

    def write_strip(self) -> Path | None:
        with self._lock:
            overlays = list(self.overlays)
        if not self.params.strip_path or not overlays:
            return None
        picks = np.linspace(0, len(overlays) - 1, min(self.params.strip_frames, len(overlays))).round().astype(int)
        path = Path(self.params.strip_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), grid([overlays[i] for i in picks], cols=2, tile_width=480)):
            raise OSError(f"cannot write {path}")
        return path

    def diagnostic_values(self) -> dict[str, str]:
        unpaired = self.unpaired
        return {"pairs": str(len(self.pairs)), "unpaired_predictions": str(unpaired["pred"]),
                "unpaired_ground_truth": str(unpaired["truth"])}

    def report(self) -> dict[str, Any]:
        figures = self.scores()
        strip = self.write_strip()
        if strip is not None:
            figures["strip"] = str(strip)
        return figures


def main(args: list[str] | None = None) -> int:
    return node_main(LaneScorer, args)
