"""What a run records as it goes: TensorBoard scalars, the same scalars as json lines (readable without
TensorBoard, and what the curves are drawn from), and a PNG of the loss and validation-F1 curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("refine_train")


class Logbook:
    """Scalars of a run in `out`; `resumed_at` (the checkpoint's step) drops what was logged after it."""

    def __init__(self, out: Path, resumed_at: int | None = None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.lines = out / "scalars.jsonl"
        if resumed_at is not None:
            self._truncate(resumed_at)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is optional on training-only machines
            log.warning("tensorboard is not installed: scalars go to %s only", self.lines)
            self.writer = None
        else:
            purge = None if resumed_at is None else resumed_at + 1
            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=purge)

    def _truncate(self, step: int) -> None:
        """Forget scalars logged after `step`: a resumed run logs those steps again."""
        kept = [entry for entry in _read(self.lines) if entry["step"] <= step]
        tmp = self.lines.with_name(self.lines.name + ".tmp")
        tmp.write_text("".join(json.dumps(entry) + "\n" for entry in kept))
        tmp.replace(self.lines)

    def scalars(self, group: str, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{group}/{name}", value, step)
            self.writer.flush()
        with open(self.lines, "a") as stream:
            stream.write(json.dumps({"group": group, "step": step, **values}) + "\n")

    def curves(self, history: list[dict[str, Any]]) -> Path:
        """Draw training loss and every validation figure (all in [0, 1]) against the step into curves.png."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        train = [entry for entry in _read(self.lines) if entry["group"] == "train"]
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        if train:
            left.plot([e["step"] for e in train], [e["loss"] for e in train], lw=1)
        left.set(title="training loss", xlabel="step", yscale="log")
        for key in dict.fromkeys(k for entry in history for k in entry if k != "step"):
            points = [(e["step"], e[key]) for e in history if key in e]
            right.plot(*zip(*points), marker="o", label=key)
        right.set(title="validation", xlabel="step", ylim=(0, 1))
        right.legend(loc="lower right")
        for axis in (left, right):
            axis.grid(alpha=0.3)
        figure.tight_layout()
        path = self.out / "curves.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
