"""Running `refine-perception replay` as a user does, and the check that a bad frame in a bag is reported
and scored as a frame without output; shared by the lane, sticks and street replay tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refine_perception.bags.reader import BagReader

CLI = [str(Path(sys.prefix) / "lib" / "refine_perception" / "refine-perception")]
TIMING_KEYS = ("latency_ms", "throughput_fps", "mode")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def figures(folder: Path) -> dict:
    return json.loads((folder / "figures.json").read_text())


def rewrite_image(source: Path, target: Path, index: int, replace: Callable[[Any], Any | None]
                  ) -> tuple[int, int]:
    """Copy bag `source` to `target` with image message `index` passed through `replace` (None: left out);
    returns that frame's stamp. Everything else is copied byte for byte."""
    from refine_perception.bags.frames import IMAGE_TYPES, cdr_stamp
    from refine_perception.bags.writer import BagWriter

    images = 0
    stamp = None
    with BagWriter(target, "mcap") as writer:
        for message in BagReader(source).messages():
            camera = "depth" not in message.topic and not message.topic.startswith("/ground_truth/")
            if message.msgtype in IMAGE_TYPES and camera:
                images += 1
                if images - 1 == index:
                    stamp = cdr_stamp(message.data)
                    msg = replace(message.decode())
                    if msg is not None:
                        writer.write(message.topic, msg, message.time_ns)
                    continue
            writer.write_raw(message.topic, message.msgtype, message.data, message.time_ns)
    for params in source.glob("*.yaml"):
        if params.name != "metadata.yaml":
            shutil.copy(params, target)
    assert stamp is not None, f"{source} has no image {index}"
    return stamp


def assert_bad_frame_scored_as_missing(bag: Path, index: int, corrupt: Callable[[Any], Any], tmp_path: Path,
                                       *extra: str) -> None:
    """Replay `bag` with image `index` corrupted, offline and lossless: both must write the report, list
    the frame, and score it as a frame without output, i.e. as the same bag whose image never reached the
    node (the outputs of a run on the bag without that image, scored against every frame's truth)."""
    bad, missing = tmp_path / "bad", tmp_path / "missing"
    sec, nsec = rewrite_image(bag, bad, index, corrupt)
    rewrite_image(bag, missing, index, lambda msg: None)
    run("replay", str(missing), "--out", str(tmp_path / "missing_run"), "--mode", "offline", *extra)
    run("replay", str(bad), "--out", str(tmp_path / "reference"),
        "--results", str(tmp_path / "missing_run" / "results"))
    reference = {k: v for k, v in figures(tmp_path / "reference").items() if k not in TIMING_KEYS}
    assert reference["dropped"] == 1 and reference["outputs"] == reference["frames_scored"] - 1
    for mode in ("offline", "lossless"):
        out = run("replay", str(bad), "--out", str(tmp_path / mode), "--mode", mode, *extra).stdout
        result = figures(tmp_path / mode)
        assert {k: v for k, v in result.items() if k not in TIMING_KEYS} == reference, mode
        (listed,) = result["bad_frames"]
        assert (listed["sec"], listed["nanosec"], listed["index"]) == (sec, nsec, index) and listed["reason"], listed
        assert f"bad frame {sec}.{nsec:09d}" in out
        report = (tmp_path / mode / "report.md").read_text()
        assert "## Bad frames" in report and f"{sec}.{nsec:09d}" in report and listed["reason"] in report

