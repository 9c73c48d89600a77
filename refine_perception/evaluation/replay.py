"""Replay evaluation of the lane detector, the instance segmenter and the street segmenter: their outputs (recorded by the bag
player, by `ros2 bag record`, or computed offline by the node's own pipeline) matched by stamp to a bag's
frames and scored against its ground truth.

Timing comes from the player's timing.json (wall time each frame was sent) and the result bag's log
times (wall time each output arrived): latency = arrival - sending, per frame. Frames without an output
are drops; in realtime mode they count as missed lanes or objects, which is what the robot lives with.
A frame whose camera image cannot be read (malformed: the node drops it) is scored the same way and
listed as a bad frame with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refine_perception.bags.frames import TIMING_FILE, Stamp, cdr_stamp, write_timing
from refine_perception.bags.instance_bags import InstanceBag
from refine_perception.bags.lane_bags import LaneBag
from refine_perception.bags.reader import BagError, BagReader
from refine_perception.bags.street_bags import StreetBag
from refine_perception.bags.writer import BagWriter
from refine_perception.core.image_codec import ImageFormatError
from refine_perception.core.sync import ApproximateTimeSync
from refine_perception.evaluation.instances import InstanceScores, score_instance_frames
from refine_perception.evaluation.lanes import LaneScores, score_lane_frames
from refine_perception.evaluation.street import StreetScores, score_street_frames
from refine_perception.ros.image_messages import image_to_numpy, to_bgr
from refine_perception.ros.instance_messages import instance_results

LANES_TOPIC = "/lanes"
INSTANCES_TOPIC = "/instances"
LABELS_TOPIC = "/labels"
Bag = LaneBag | InstanceBag | StreetBag


def stamp_label(stamp: Stamp) -> str:
    """A stamp as people read it: seconds.nanoseconds."""
    return f"{stamp[0]}.{stamp[1]:09d}"


@dataclass(frozen=True)
class BadFrame:
    """A scored frame whose camera image cannot be read: the node drops it, so it has no output."""

    index: int  # among the scored frames, as the report numbers them
    stamp: Stamp
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "sec": self.stamp[0], "nanosec": self.stamp[1], "reason": self.reason}


@dataclass
class ReplayEvaluation:
    """One run's scores, outputs and timing; `task` says which node's (lanes, instances or street)."""

    task: str
    bag: Bag
    scores: LaneScores | InstanceScores | StreetScores
    stamps: list[Stamp]  # the scored frames, in order (those with ground truth)
    outputs: dict[Stamp, Any]
    latency_ms: dict[Stamp, float] = field(default_factory=dict)
    mode: str = "unknown"
    wall_s: float | None = None
    errors: list[str] = field(default_factory=list)
    unmatched_outputs: int = 0
    bad_frames: list[BadFrame] = field(default_factory=list)

    @property
    def throughput_fps(self) -> float | None:
        return len(self.outputs) / self.wall_s if self.wall_s else None

    def timing_summary(self) -> dict[str, float]:
        values = np.array(list(self.latency_ms.values()))
        if not len(values):
            return {}
        return {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
                "p95": float(np.percentile(values, 95)), "max": float(values.max())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "bag": str(self.bag.path),
            "mode": self.mode,
            "image_topic": self.bag.image_topic,
            "frames_in_bag": len(self.bag.stamps),
            "frames_scored": len(self.stamps),
            "outputs": len(self.outputs),
            "dropped": self.scores.frames_without_output,
            "unmatched_outputs": self.unmatched_outputs,
            "latency_ms": self.timing_summary(),
            "throughput_fps": self.throughput_fps,
            "errors": self.errors,
            "bad_frames": [frame.to_dict() for frame in self.bad_frames],
            **self.scores.to_dict(),
        }


def read_results(result_bag: str | Path, topic: str = LANES_TOPIC) -> tuple[dict[Stamp, Any], dict[Stamp, int],
                                                                              list[str]]:
    """The outputs on `topic` by stamp, their log (arrival) times, and read errors."""
    reader = BagReader(result_bag)
    outputs: dict[Stamp, Any] = {}
    arrived: dict[Stamp, int] = {}
    undecodable: list[str] = []
    for message in reader.messages({topic}):
        try:
            stamp = cdr_stamp(message.data)
            outputs[stamp] = message.decode()
        except BagError as error:
            undecodable.append(str(error))
            continue
        arrived[stamp] = message.time_ns
    return outputs, arrived, [str(error) for error in reader.errors] + undecodable


def find_bad_frames(bag: Bag, stamps: list[Stamp], outputs: dict[Stamp, Any]) -> list[BadFrame]:
    """The frames of `stamps` without an output whose camera image does not decode as the node decodes it.
    Only frames without output are read: any other image the node has read."""
    missing = {stamp: index for index, stamp in enumerate(stamps) if stamp not in outputs}
    bad: list[BadFrame] = []
    if not missing:
        return bad
    for message in BagReader(bag.path).messages({bag.image_topic}):
        try:
            stamp = cdr_stamp(message.data)
        except BagError:  # not a frame: already among the bag's errors
            continue
        if stamp not in missing:
            continue
        try:
            to_bgr(message.decode())
        except (BagError, ImageFormatError) as error:
            bad.append(BadFrame(missing[stamp], stamp, str(error)))
    return sorted(bad, key=lambda frame: frame.index)


def _evaluate_run(task: str, bag: Bag, result_bag: str | Path, topic: str,
                  score: Callable[[list[Stamp], dict[Stamp, Any]], Any]) -> ReplayEvaluation:
    outputs, arrived, errors = read_results(result_bag, topic)
    timing_path = Path(result_bag) / TIMING_FILE
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else None
    stamps = [s for s in bag.stamps if s in bag.truth]
    if not stamps:
        raise BagError(f"{bag.path}: no frame has ground truth")
    evaluation = ReplayEvaluation(task, bag, score(stamps, outputs), stamps, outputs,
                                  errors=[str(e) for e in bag.errors] + errors,
                                  unmatched_outputs=sum(1 for s in outputs if s not in bag.truth),
                                  bad_frames=find_bad_frames(bag, stamps, outputs))
    if timing is not None:
        sent = {(sec, nsec): wall for sec, nsec, wall in timing["frames"]}
        evaluation.latency_ms = {s: (arrived[s] - sent[s]) / 1e6 for s in stamps if s in sent and s in arrived}
        evaluation.mode = timing["mode"]
        evaluation.errors += [e for e in timing.get("read_errors", []) if e not in evaluation.errors]
        if sent and arrived:
            evaluation.wall_s = (max(arrived.values()) - min(sent.values())) / 1e9
    return evaluation


def evaluate_lane_run(bag: LaneBag, result_bag: str | Path, topic: str = LANES_TOPIC,
                      cut_ratio: float = 270 / 590) -> ReplayEvaluation:
    def score(stamps: list[Stamp], outputs: dict[Stamp, Any]) -> LaneScores:
        tags = [bag.tags.get(s, ()) for s in stamps]
        return score_lane_frames([bag.truth[s] for s in stamps], [outputs.get(s) for s in stamps],
                                 tags if any(tags) else (), cut_ratio=cut_ratio)

    return _evaluate_run("lanes", bag, result_bag, topic, score)


def evaluate_instance_run(bag: InstanceBag, result_bag: str | Path, topic: str = INSTANCES_TOPIC) -> ReplayEvaluation:
    def score(stamps: list[Stamp], outputs: dict[Stamp, Any]) -> InstanceScores:
        return score_instance_frames([instance_results(bag.truth[s]) for s in stamps],
                                     [instance_results(outputs[s]) if s in outputs else None for s in stamps])

    return _evaluate_run("instances", bag, result_bag, topic, score)


def evaluate_street_run(bag: StreetBag, result_bag: str | Path, topic: str = LABELS_TOPIC) -> ReplayEvaluation:
    """The label images on `topic` decide what counts as an output (drops, latency); the instances are
    read from the `instances` topic beside it (/ns/labels -> /ns/instances) in the same result bag. A result
    bag without that topic is scored without instances, and says so among the errors."""
    topics = BagReader(result_bag).topics()
    if topics.get(topic) != "sensor_msgs/msg/Image":
        raise BagError(f"{result_bag}: {topic} is not a topic of label images (sensor_msgs/msg/Image) in the result "
                       f"bag (it has: {', '.join(f'{t} {k}' for t, k in sorted(topics.items())) or 'nothing'})")
    instances_topic = f"{topic.rsplit('/', 1)[0]}/instances"
    instance_outputs: dict[Stamp, Any] = {}
    if topics.get(instances_topic) == "refine_msgs/msg/InstanceArray":
        instance_outputs, _, _ = read_results(result_bag, instances_topic)

    def score(stamps: list[Stamp], outputs: dict[Stamp, Any]) -> StreetScores:
        return score_street_frames([bag.truth[s] for s in stamps], [bag.instance_truth[s] for s in stamps],
                                   [image_to_numpy(outputs[s], "mono8") if s in outputs else None for s in stamps],
                                   [instance_results(instance_outputs[s]) if s in instance_outputs else None
                                    for s in stamps])

    evaluation = _evaluate_run("street", bag, result_bag, topic, score)
    if not instance_outputs:
        evaluation.errors.append(f"{result_bag}: no {instances_topic} (refine_msgs/InstanceArray): instances scored as "
                                 "missing")
    return evaluation


def run_offline(bag: Bag, pipeline: Callable[..., tuple[Any, ...]], output_topics: Sequence[str],
                inputs: Sequence[str], result_bag: str | Path, slop_s: float = 0.02, storage: str = "mcap") -> int:
    """Run a node's pipeline on every frame of `bag` without DDS and write its outputs (the first items
    it returns, one per output topic) like the player records them; returns the count. `inputs` are the bag topics the
    pipeline takes, camera image first; several are matched by stamp with the nodes' synchroniser.
    A frame the pipeline finds malformed is skipped, as the node drops it: the evaluation scores it as a
    frame without output and lists it (`find_bad_frames`)."""
    sent: list[tuple[Stamp, int]] = []
    errors: list[str] = []
    count = 0
    with BagWriter(result_bag, storage, overwrite=True) as writer:

        def process(image: Any, *others: Any) -> None:
            nonlocal count
            started = time.time_ns()
            try:
                outputs = pipeline(image, *others)
            except ImageFormatError:
                return
            for topic, output in zip(output_topics, outputs):
                writer.write(topic, output, time.time_ns())
            sent.append(((image.header.stamp.sec, image.header.stamp.nanosec), started))
            count += 1

        sync = ApproximateTimeSync(len(inputs), 10, slop_s, process) if len(inputs) > 1 else None
        reader = BagReader(bag.path)
        for message in reader.messages(set(inputs)):
            try:
                msg = message.decode()
            except BagError as error:
                errors.append(str(error))
                continue
            if sync is None:
                process(msg)
            else:
                sync.add(list(inputs).index(message.topic), msg)
    write_timing(result_bag, "offline", bag.path, sent, errors=[str(e) for e in reader.errors] + errors)
    return count
