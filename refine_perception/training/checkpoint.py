"""Training checkpoints that survive being killed at any moment.

A checkpoint is a folder `checkpoints/iter_<n>/` with `state.safetensors` (model, EMA and optimizer
tensors, RNG state) and `state.json` (counters, schedule, history, config). It is written under a
temporary name and renamed when complete; then `checkpoints/latest` (a one-line text file) is replaced
atomically to name it. A crash leaves either the previous checkpoint or the new one, never half of one.
No pickle anywhere: the optimizer's tensors go to safetensors, its hyper-parameters to json.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import safetensors.torch
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not belong to this run."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, write: Any) -> None:
    write(path)
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer's state split into named tensors and a json-ready rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        plain["state"][str(index)] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(index)][name] = value
    return tensors, plain


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {int(index): dict(entry) for index, entry in plain["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def save_checkpoint(root: Path, iteration: int, tensors: dict[str, torch.Tensor], info: dict[str, Any],
                    keep: int) -> Path:
    """Write checkpoint `iteration` under root/checkpoints, point `latest` at it, keep the newest `keep`."""
    folder = root / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"iter_{iteration:08d}"
    tmp = folder / f".iter_{iteration:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _write_file(tmp / "state.safetensors", lambda p: safetensors.torch.save_file(tensors, str(p)))
    _write_file(tmp / "state.json", lambda p: p.write_text(json.dumps(info, indent=1)))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    pointer = folder / ".latest.tmp"
    _write_file(pointer, lambda p: p.write_text(final.name + "\n"))
    pointer.replace(folder / "latest")
    _fsync_dir(folder)
    for old in sorted(folder.glob("iter_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Tensors and info of the checkpoint `latest` names; None when the run has none yet."""
    pointer = root / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = root / "checkpoints" / pointer.read_text().strip()
    try:
        tensors = safetensors.torch.load_file(str(folder / "state.safetensors"))
        info = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError, safetensors.SafetensorError) as err:
        raise CheckpointError(f"checkpoint {folder} is unreadable: {err}") from err
    return tensors, info
