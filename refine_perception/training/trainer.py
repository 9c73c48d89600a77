"""The training loop of every model: AdamW + per-iteration cosine, optional bfloat16 autocast (on CUDA, and
on CPUs with native bfloat16, where it roughly halves a step), channels-last tensors, weight EMA, gradient
clipping, periodic validation, atomic checkpoints and exact resumption, and PyTorch DDP when launched by
`torchrun` (one process per GPU, or several CPU processes on gloo). What differs between models (network,
data, loss, validation metric, model file) comes from a `TrainingTask`.

Exact resumption: the data order of epoch e is a permutation drawn from (seed, e); sample i of epoch e
is augmented from (seed, e, i); the loader gets its own generator, so the global torch RNG (dropout)
only advances in the training step and is saved with the model, EMA, optimizer and schedule. A run
killed at any point and resumed from its last checkpoint therefore ends with the same weights as an
uninterrupted one (bit for bit on CPU).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from refine_perception.training.checkpoint import (
    CheckpointError,
    load_latest,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
)
from refine_perception.training.config import FINAL_WEIGHTS, OptimConfig, RunConfig, to_dict
from refine_perception.training.logbook import Logbook

log = logging.getLogger("refine_train")
MAX_BAD_STEPS = 10  # consecutive non-finite losses before the run stops


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    """Read torchrun's environment; join the process group when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Distributed(rank, world, local_rank, device)


class WeightEMA:
    """Exponential moving average of the weights (BatchNorm statistics copied), with the usual warm-up
    `decay * (1 - exp(-updates / 2000))` so that early averages are not dominated by the random init."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.decay * (1.0 - math.exp(-self.updates / 2000.0))
        ema_state = self.module.state_dict()
        for key, value in model.state_dict().items():
            target = ema_state[key]
            if value.is_floating_point():
                target.lerp_(value.detach(), 1.0 - decay)
            else:
                target.copy_(value)


def _epoch_batches(n: int, batch: int, world: int, rank: int, seed: int, epoch: int) -> list[list[int]]:
    """This rank's batches of epoch `epoch`: a seeded permutation cut into world x batch blocks."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    per_step = batch * world
    steps = n // per_step
    return [order[s * per_step + rank * batch : s * per_step + (rank + 1) * batch] for s in range(steps)]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class TrainingSet(Protocol):
    """A map-style dataset whose augmentation depends on (seed, epoch, index), hence `set_epoch`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...

    def set_epoch(self, epoch: int) -> None: ...


class TrainingConfig(Protocol):
    """The sections the loop reads; each task's config dataclass has them (and its own model/data ones)."""

    @property
    def optim(self) -> OptimConfig: ...

    @property
    def run(self) -> RunConfig: ...

    @property
    def val(self) -> Any: ...  # with `every`: iterations between validations, 0 = every epoch


class TrainingTask(Protocol):
    """What one model family brings to the loop."""

    name: str  # progress bar: "train <name>"
    selection_metric: str  # validation figure (higher is better) that picks best.safetensors

    def build_model(self) -> nn.Module: ...  # with `model.init` weights loaded when configured

    def training_set(self) -> TrainingSet: ...

    collate: Callable[[list[Any]], tuple[torch.Tensor, Any]]

    def loss(self, output: Any, targets: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float] | None: ...

    def export(self, path: Path, model: nn.Module, info: dict[str, Any]) -> None: ...


def _as_float(output: Any) -> Any:
    """Network outputs (tensors, possibly nested in (named) tuples) in float32, e.g. after bf16 autocast."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, tuple):
        items = [_as_float(item) for item in output]
        return type(output)(*items) if hasattr(output, "_fields") else tuple(items)
    return output


def _fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 autocast pays on `device`: always on CUDA; on a CPU only with AVX512-BF16 or AMX
    (oneDNN then runs convolutions natively, about 1.8x faster than fp32 per step), since elsewhere
    bfloat16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


class Trainer:
    """Trains one model of `task` as `config` says; files go to `config.run.out`."""

    def __init__(self, config: TrainingConfig, task: TrainingTask, progress: bool = True) -> None:
        self.config = config
        self.task = task
        self.out = Path(config.run.out)
        self.env = setup_distributed()
        self.progress = progress and self.env.main
        if config.run.threads > 0:
            torch.set_num_threads(config.run.threads)
        torch.manual_seed(config.run.seed)
        self.model = task.build_model()
        self.model.to(self.env.device, memory_format=torch.channels_last)
        self.autocast_device = self.env.device.type if config.optim.amp and _fast_bf16(self.env.device) else None
        self.ema = WeightEMA(self.model, config.optim.ema_decay) if config.optim.ema_decay > 0 else None
        self.net: nn.Module = self.model
        if self.env.world > 1:
            self.net = DistributedDataParallel(self.model, device_ids=[self.env.device.index] if
                                               self.env.device.type == "cuda" else None)
        self.data = task.training_set()
        self.steps_per_epoch = len(self.data) // (config.optim.batch_size * self.env.world)
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.data)} training images do not fill one batch of "
                             f"{config.optim.batch_size} x {self.env.world} processes")
        self.total_steps = self.steps_per_epoch * config.optim.epochs
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.optim.lr,
                                           weight_decay=config.optim.weight_decay)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.total_steps)
        self.step = 0
        self.best_score = -math.inf
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0  # training seconds over all sessions of this run
        self.logbook: Logbook | None = None

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors |= {f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.ema.module.state_dict().items()}
        optim_tensors, optim_plain = optimizer_tensors(self.optimizer)
        tensors |= optim_tensors
        tensors["rng.torch"] = torch.get_rng_state()
        info = {
            "step": self.step,
            "total_steps": self.total_steps,
            "best_score": self.best_score,
            "elapsed_s": self.elapsed,
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "optimizer": optim_plain,
            "schedule": self.schedule.state_dict(),
            "history": self.history,
            "config": to_dict(self.config),
            "world": self.env.world,
        }
        return tensors, info

    def save(self) -> None:
        if self.env.main:
            tensors, info = self._state()
            save_checkpoint(self.out, self.step, tensors, info, self.config.run.keep_checkpoints)

    def resume(self) -> bool:
        """Load the run's latest checkpoint; False when there is none (a fresh start)."""
        loaded = load_latest(self.out)
        if loaded is None:
            return False
        tensors, info = loaded
        if info.get("total_steps") != self.total_steps or info.get("world") != self.env.world:
            raise CheckpointError(f"{self.out}: the checkpoint is of a run with {info.get('total_steps')} steps on "
                                  f"{info.get('world')} processes; this config gives {self.total_steps} on "
                                  f"{self.env.world}. Resume with the config the run was started with.")
        device = self.env.device
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if self.ema is not None:
            self.ema.module.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            self.ema.updates = int(info["ema_updates"])
        restore_optimizer(self.optimizer, {k: v.to(device) for k, v in tensors.items() if k.startswith("optim.")},
                          info["optimizer"])
        self.schedule.load_state_dict(info["schedule"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step = int(info["step"])
        self.best_score = float(info.get("best_score", info.get("best_f1", -math.inf)))  # best_f1: lane runs before 2026-11
        self.history = list(info["history"])
        self.elapsed = float(info.get("elapsed_s", 0.0))
        return True

    # ------------------------------------------------------------------ training

    def _batches(self, epoch: int, skip: int) -> Iterator[tuple[torch.Tensor, list]]:
        self.data.set_epoch(epoch)
        batches = _epoch_batches(len(self.data), self.config.optim.batch_size, self.env.world, self.env.rank,
                                 self.config.run.seed, epoch)[skip:]
        workers = self.config.run.workers
        loader = DataLoader(self.data, batch_sampler=batches, num_workers=workers, collate_fn=self.task.collate,
                            worker_init_fn=_worker_init if workers else None,
                            generator=torch.Generator().manual_seed(epoch),
                            pin_memory=self.env.device.type == "cuda")
        return iter(loader)

    def _train_step(self, images: torch.Tensor, targets: Any) -> dict[str, float] | None:
        autocast = (torch.autocast(self.autocast_device, dtype=torch.bfloat16) if self.autocast_device
                    else nullcontext())
        with autocast:
            output = self.net(images.to(self.env.device, non_blocking=True, memory_format=torch.channels_last))
        loss, parts = self.task.loss(_as_float(output), targets)
        if not bool(torch.isfinite(loss)):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float("nan")
        if self.config.optim.grad_clip > 0:
            grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip))
        self.optimizer.step()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update(self.model)
        scalars = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}}
        if self.config.optim.grad_clip > 0:
            scalars["grad_norm"] = grad_norm
        return scalars

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict[str, Any] | None:
        if not self.env.main:
            return None
        model = self.eval_model()
        was_training = model.training
        model.eval()
        result = self.task.validate(model, self.env.device)
        model.train(was_training)
        if self.ema is not None:
            self.ema.module.eval()
        if result is None:
            return None
        figures = {"step": self.step, **result}
        key = self.task.selection_metric
        if figures[key] > self.best_score:
            self.best_score = figures[key]
            self.export(self.out / "best.safetensors", {"selected_by": f"validation {key}", **figures})
        return figures

    def export(self, path: Path, extra: dict[str, Any]) -> None:
        info = {
            "training": {"config": to_dict(self.config), "step": self.step, "elapsed_s": round(self.elapsed, 1),
                         "device": str(self.env.device), "processes": self.env.world},
            **extra,
        }
        self.task.export(path, self.eval_model(), info)

    def fit(self, resume: bool = False) -> Path:
        """Train to the end of the schedule; returns the final weights' path."""
        resumed = resume and self.resume()
        if resumed:
            log.info("resumed %s at step %d of %d", self.out, self.step, self.total_steps)
        elif not resume and (self.out / "checkpoints" / "latest").exists():
            raise CheckpointError(f"{self.out} already holds a run; pass --resume to continue it or choose "
                                  "another run.out")
        if self.env.main:
            self.logbook = Logbook(self.out, self.step if resumed else None)
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {self.task.name}", unit="it",
                   disable=not self.progress, dynamic_ncols=True)
        bad_steps = 0
        cfg = self.config
        while self.step < self.total_steps:
            epoch, skip = divmod(self.step, self.steps_per_epoch)
            started = time.perf_counter()
            for images, targets in self._batches(epoch, skip):
                scalars = self._train_step(images, targets)
                if scalars is None:
                    bad_steps += 1
                    log.warning("step %d: non-finite loss, update skipped (%d in a row)", self.step, bad_steps)
                    if bad_steps >= MAX_BAD_STEPS:
                        raise FloatingPointError(f"{bad_steps} consecutive non-finite losses at step {self.step}")
                    continue
                bad_steps = 0
                self.step += 1
                now = time.perf_counter()
                self.elapsed += now - started
                started = now
                bar.update(1)
                bar.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{self.schedule.get_last_lr()[0]:.2e}")
                if self.logbook is not None and (self.step % cfg.run.log_every == 0 or self.step == self.total_steps):
                    self.logbook.scalars("train", self.step, {**scalars, "lr": self.schedule.get_last_lr()[0]})
                end_of_epoch = self.step % self.steps_per_epoch == 0
                if (cfg.val.every and self.step % cfg.val.every == 0) or (not cfg.val.every and end_of_epoch):
                    figures = self.validate()
                    if figures is not None and self.logbook is not None:
                        self.history.append(figures)
                        self.logbook.scalars("val", self.step, {k: v for k, v in figures.items() if k != "step"})
                        self.logbook.curves(self.history)
                        bar.write(f"step {self.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items()
                                                                     if k != "step"))
                    started = time.perf_counter()
                if self.step % cfg.run.checkpoint_every == 0 or self.step == self.total_steps:
                    self.save()
                    started = time.perf_counter()
                if self.step >= self.total_steps:
                    break
        bar.close()
        final = self.out / FINAL_WEIGHTS
        if self.env.main:
            self.export(final, {})
            if self.logbook is not None:
                self.logbook.curves(self.history)
                self.logbook.close()
        if self.env.world > 1:
            dist.barrier()
        return final
