"""Training configuration: one YAML file validated into frozen dataclasses.

Every field has a type and a default; `load_config` rejects unknown keys and wrong types with the dotted
path of the offending entry, so a typo fails before a long run starts, not after. Command-line
`--set section.key=value` overrides are applied to the YAML tree before validation, with values parsed
as YAML scalars (`--set optim.lr=3e-4`, `--set run.out=runs/x`).

A file may also be a recipe: several runs, each continuing from the weights of the one before, written
as the first run's config plus a `stages:` list. Each stage has a `name` and only the entries that change
from the stage before (mappings merge key by key; a list, such as `train`, is replaced whole); every stage
after the first starts from the previous stage's `run.out/final.safetensors`. `load_stages` validates
them all at once, so a recipe of many hours cannot fail at its fifth stage for a typo.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import yaml

from refine_perception.data.formats.culane import CATEGORIES
from refine_perception.segmentation.classes import (
    STREET_CLASSES,
    STREET_INSTANCE_CLASSES,
    has_instances,
    label_ids_of,
)

FINAL_WEIGHTS = "final.safetensors"  # what a run leaves in run.out, and where the next stage of a recipe starts
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A configuration that cannot be used, with the dotted path of the problem."""


@dataclass(frozen=True)
class ModelConfig:
    backbone: Literal["resnet18", "resnet34", "dla34"] = "resnet18"
    input_height: int = 320
    input_width: int = 800
    num_seg_classes: int = 5  # background + lane positions 1..4 (CULane); TuSimple configs use 7
    num_priors: int = 192  # the paper's; the head's cost grows with num_priors x sample_points
    sample_points: int = 36
    pooling: Literal["line", "lane"] = "line"  # later stages pool along the straight line (paper) or the lane
    init: str = ""  # start from these weights (a refine-train .safetensors of the same architecture), e.g. to fine-tune
    # ImageNet weights for the backbone of a fresh run, as the paper starts: a .safetensors file, or a .pth/.pt torch
    # state dict (read with weights_only=True), with torchvision / timm key names; "": random initialisation
    backbone_weights: str = ""


@dataclass(frozen=True)
class DatasetConfig:
    """A source of annotated lane images. `synthetic` renders scenes on the fly (no disk); `culane`,
    `tusimple` and `curvelanes` read the official layouts (our generator writes the first two, with
    type/colour sidecars)."""

    kind: Literal["synthetic", "culane", "tusimple", "curvelanes"] = "synthetic"
    root: str = ""  # culane / tusimple / curvelanes: dataset root
    list_file: str = "list/train_gt.txt"  # culane: list under root
    label_files: tuple[str, ...] = ("label_data_train.json",)  # tusimple: json-lines files under root
    split: str = "train"  # curvelanes: the split folder under root (train, valid), listed in <split>/<split>.txt
    cut_height: int = 270  # rows cropped off the top: 270 for 1640x590 CULane frames, 160 for TuSimple 1280x720
    limit: int = 0  # use only the first `limit` images (0: all)
    seed: int = 0  # synthetic: stream seed (use one never used for testing)
    size: int = 1000  # synthetic: images per epoch
    framing: Literal["culane", "tusimple"] = "culane"  # synthetic: 1640x590 CULane or 1280x720 TuSimple view
    category: str = ""  # synthetic: render only this CULane category (e.g. curve, to train a weak one harder); "": the natural mix


@dataclass(frozen=True)
class AugmentConfig:
    """The official CLRNet augmentations (imgaug in the original), each with its probability."""

    flip: float = 0.5
    channel_shuffle: float = 0.1
    brightness: float = 0.6
    brightness_mul: tuple[float, float] = (0.85, 1.15)
    brightness_add: float = 10.0
    hue_saturation: float = 0.7
    hue_saturation_add: float = 10.0
    blur: float = 0.2  # motion or median blur, kernel 3 or 5
    affine: float = 0.7
    translate: float = 0.1  # fraction of the size
    rotate: float = 10.0  # degrees
    scale: tuple[float, float] = (0.8, 1.2)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a cosine schedule stepped every iteration (no warm-up), as the official configs."""

    epochs: int = 15
    batch_size: int = 24  # per process
    lr: float = 6e-4
    weight_decay: float = 0.01
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    ema_decay: float = 0.0  # 0 disables the weight EMA; CLRerNet uses 0.9999
    amp: bool = True  # bfloat16 autocast on CUDA and on CPUs with native bfloat16 (AVX512-BF16, AMX)


@dataclass(frozen=True)
class LossConfig:
    preset: Literal["culane", "tusimple"] = "culane"
    type_weight: float = 1.0
    color_weight: float = 1.0
    iou: Literal["line", "lane"] = "line"  # CLRNet's Line IoU or CLRerNet's LaneIoU (slope-widened band)


@dataclass(frozen=True)
class ValidationConfig:
    """Periodic scoring with the CULane metric (F1 at IoU 0.5 selects the best checkpoint)."""

    datasets: tuple[DatasetConfig, ...] = ()
    every: int = 0  # iterations between validations; 0: at the end of every epoch
    batch_size: int = 8
    conf_threshold: float = 0.4
    nms_threshold: float = 50.0
    max_lanes: int = 4


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/lanes"
    seed: int = 0
    workers: int = 2  # data-loading processes per training process (0: load in the main process)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    log_every: int = 20  # iterations between logged scalars
    checkpoint_every: int = 500  # iterations between checkpoints (one is always written at the end)
    keep_checkpoints: int = 2


@dataclass(frozen=True)
class InstanceModelConfig:
    """The instance network at a CPU-friendly width: SpatialEmbeddings (ERFNet encoder, offset/sigma and seed
    decoders) or the discriminative loss's (the same encoder, embedding and semantic decoders)."""

    formulation: Literal["spatial_embeddings", "discriminative"] = "spatial_embeddings"
    width: float = 1.0  # channel multiplier of the paper's ERFNet (16/64/128 at 1.0)
    n_sigma: int = 2  # spatial_embeddings: 2, elliptic bandwidths, which suit long thin objects
    input_height: int = 240
    input_width: int = 320
    pixels_per_unit: float = 256.0  # spatial_embeddings: input pixels per embedding unit (offsets reach one unit)
    embedding_dim: int = 8  # discriminative: size of the per-pixel embedding (the authors' 8; 16 for crowded scenes)
    coordinates: bool = False  # discriminative: append each position's (x, y) to the embedding decoder's input
    line_channels: int = 0  # discriminative: embedding channels built as a X + b Y + c (a stick's line; see the network)
    line_unit_px: float = 16.0  # discriminative: input pixels per unit of X and Y in the line channels
    init: str = ""  # start from these weights (a refine-train instance .safetensors of the same architecture)


@dataclass(frozen=True)
class SticksDataConfig:
    """Pick-and-place stick scenes: rendered on the fly from a seed, or read from a split written by
    `refine-perception data generate sticks` (its annotations.json and 16-bit instance images)."""

    kind: Literal["synthetic", "disk"] = "synthetic"
    seed: int = 0  # synthetic: stream seed (use one never used for testing)
    size: int = 1000  # synthetic: images per epoch
    image_width: int = 640  # synthetic: rendered size
    image_height: int = 480
    root: str = ""  # disk: the split folder (holding annotations.json)
    limit: int = 0  # use only the first `limit` images (0: all)


@dataclass(frozen=True)
class InstanceLossConfig:
    """The loss of the chosen formulation. SpatialEmbeddings: the weights of its terms (the paper's code: 1,
    10, 1, foreground 10; offset 0). Discriminative: the paper's margins and weights (delta_v 0.5, delta_d
    1.5, alpha = beta = 1, gamma 0.001; the margins also set the clustering's distances) and the weight of
    the semantic head's cross-entropy."""

    instance_weight: float = 1.0
    variance_weight: float = 10.0
    seed_weight: float = 1.0
    foreground_weight: float = 10.0  # weight of instance pixels in the seed term
    offset_weight: float = 0.0  # pull every pixel's embedding to its centre: faster start on long objects
    delta_v: float = 0.5  # pixels are pulled to within delta_v of their instance's mean embedding
    delta_d: float = 1.5  # instance means are pushed 2 delta_d apart
    alpha: float = 1.0  # variance (pull) term
    beta: float = 1.0  # distance (push) term
    gamma: float = 0.001  # regularisation (means towards the origin)
    semantic_weight: float = 1.0  # cross-entropy of the foreground (semantic) head


# the keys each formulation alone reads; the other's must keep their defaults, so that a key set for the
# wrong formulation (or left over after switching) fails instead of being silently ignored
FORMULATION_KEYS = {
    "spatial_embeddings": {"model": ("n_sigma", "pixels_per_unit"),
                           "loss": ("instance_weight", "variance_weight", "seed_weight", "foreground_weight",
                                    "offset_weight")},
    "discriminative": {"model": ("embedding_dim", "coordinates", "line_channels", "line_unit_px"),
                       "loss": ("delta_v", "delta_d", "alpha", "beta", "gamma", "semantic_weight")},
}


@dataclass(frozen=True)
class InstanceValidationConfig:
    """Periodic mask AP on held-back scenes (AP selects the best checkpoint)."""

    datasets: tuple[SticksDataConfig, ...] = ()
    every: int = 0  # iterations between validations; 0: at the end of every epoch


@dataclass(frozen=True)
class InstancesTrainConfig:
    model: InstanceModelConfig = field(default_factory=InstanceModelConfig)
    train: tuple[SticksDataConfig, ...] = (SticksDataConfig(),)
    val: InstanceValidationConfig = field(default_factory=InstanceValidationConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: InstanceLossConfig = field(default_factory=InstanceLossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check_loop(self.train, self.optim, self.run, self.augment)
        m, loss = self.model, self.loss
        if m.input_height % 8 or m.input_width % 8 or m.input_height < 8 or m.input_width < 8:
            raise ConfigError(f"model input size must be positive multiples of 8, got {m.input_height}x{m.input_width}")
        if m.n_sigma not in (1, 2) or not m.width > 0 or not m.pixels_per_unit > 0:
            raise ConfigError(f"model: n_sigma must be 1 or 2 and width, pixels_per_unit > 0, got {m.n_sigma}, "
                              f"{m.width}, {m.pixels_per_unit}")
        if m.embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be at least 1, got {m.embedding_dim}")
        if not 0 <= m.line_channels <= m.embedding_dim or not m.line_unit_px > 0:
            raise ConfigError(f"model: need 0 <= line_channels <= embedding_dim and line_unit_px > 0, got "
                              f"{m.line_channels} and {m.line_unit_px}")
        if not 0 <= loss.delta_v < loss.delta_d:
            raise ConfigError(f"loss: need 0 <= delta_v < delta_d, got {loss.delta_v} and {loss.delta_d}")
        weights = {name: getattr(loss, name) for name in ("alpha", "beta", "gamma", "semantic_weight")}
        if any(value < 0 for value in weights.values()):
            raise ConfigError(f"loss: weights must be >= 0, got {weights}")
        for formulation, sections in FORMULATION_KEYS.items():
            if formulation != m.formulation:
                _check_defaults(self, sections, f"for the {formulation} formulation, not {m.formulation}")
        for dataset in (*self.train, *self.val.datasets):
            if dataset.kind == "disk" and not dataset.root:
                raise ConfigError("a disk sticks dataset needs a root")


def _check_defaults(config: Any, sections: Mapping[str, Sequence[str]], why: str) -> None:
    """ConfigError naming the first of `sections`' keys that differs from its default."""
    for section, names in sections.items():
        values = getattr(config, section)
        defaults = type(values)()
        for name in names:
            if getattr(values, name) != getattr(defaults, name):
                raise ConfigError(f"{section}.{name} is set ({getattr(values, name)!r}) but is {why}")


def _check_loop(train: tuple[Any, ...], optim: OptimConfig, run: RunConfig, augment: AugmentConfig) -> None:
    """The checks every task's config needs: data, loop counts, rates and probabilities."""
    if not train:
        raise ConfigError("train: at least one dataset is needed")
    for name, value in (("optim.epochs", optim.epochs), ("optim.batch_size", optim.batch_size),
                        ("run.checkpoint_every", run.checkpoint_every),
                        ("run.log_every", run.log_every), ("run.keep_checkpoints", run.keep_checkpoints)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if not optim.lr > 0 or not 0 <= optim.ema_decay < 1:
        raise ConfigError(f"optim.lr must be > 0 and optim.ema_decay in [0, 1), got {optim.lr}, {optim.ema_decay}")
    for name in ("flip", "channel_shuffle", "brightness", "hue_saturation", "blur", "affine"):
        probability = getattr(augment, name)
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"augment.{name} is a probability, got {probability}")
    if run.workers < 0 or run.threads < 0:
        raise ConfigError(f"run.workers and run.threads must be >= 0, got {run.workers}, {run.threads}")


@dataclass(frozen=True)
class StreetModelConfig:
    """The Label Refinement Network with its embedding branch: a ResNet-18 encoder at `width`, label maps
    at strides 32 to 2, an embedding at stride 2 for the instance classes."""
    width: float = 0.5  # channel multiplier of ResNet-18 (64..512 at 1.0)
    decoder_channels: int = 64  # features of each refinement stage
    embedding_dim: int = 8
    embedding_channels: int = 32  # features of the embedding branch
    input_height: int = 256
    input_width: int = 512
    classes: tuple[str, ...] = STREET_CLASSES  # Cityscapes label names (plus "lane marking"); other labels are void
    instance_classes: tuple[str, ...] = STREET_INSTANCE_CLASSES
    init: str = ""  # start from these weights (a refine-train street .safetensors of the same architecture)


@dataclass(frozen=True)
class StreetDataConfig:
    """Street scenes: rendered on the fly from a seed, or read from a Cityscapes-layout folder (ours from
    `refine-perception data generate street`, or the real Cityscapes) with gtFine labelIds and instanceIds."""
    kind: Literal["synthetic", "cityscapes"] = "synthetic"
    seed: int = 0  # synthetic: stream seed (use one never used for testing)
    size: int = 1000  # synthetic: images per epoch
    image_width: int = 1024  # synthetic: rendered size
    image_height: int = 512
    root: str = ""  # cityscapes: the dataset root (holding leftImg8bit/ and gtFine/)
    split: str = "train"  # cityscapes: the split folder
    limit: int = 0  # use only the first `limit` images (0: all)


@dataclass(frozen=True)
class StreetLossConfig:
    """LRN's cross-entropy at every stage (weights coarse to fine; the paper weighs them equally) plus the
    discriminative loss on the embedding, with the paper's margins and weights."""
    stage_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    embedding_weight: float = 1.0
    delta_v: float = 0.5
    delta_d: float = 1.5
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.001


@dataclass(frozen=True)
class StreetValidationConfig:
    """Periodic mIoU of every stage on held-back scenes, at their full size (the finest stage's mIoU
    selects the best checkpoint)."""
    datasets: tuple[StreetDataConfig, ...] = ()
    every: int = 0  # iterations between validations; 0: at the end of every epoch


@dataclass(frozen=True)
class StreetTrainConfig:
    model: StreetModelConfig = field(default_factory=StreetModelConfig)
    train: tuple[StreetDataConfig, ...] = (StreetDataConfig(),)
    val: StreetValidationConfig = field(default_factory=StreetValidationConfig)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(rotate=5.0, translate=0.05,
                                                                         scale=(0.9, 1.2)))
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: StreetLossConfig = field(default_factory=StreetLossConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/street"))

    def __post_init__(self) -> None:
        _check_loop(self.train, self.optim, self.run, self.augment)
        m, loss = self.model, self.loss
        if m.input_height % 32 or m.input_width % 32 or m.input_height < 32 or m.input_width < 32:
            raise ConfigError(f"model input size must be positive multiples of 32, got {m.input_height}x{m.input_width}")
        if not m.width > 0 or min(m.decoder_channels, m.embedding_dim, m.embedding_channels) < 1:
            raise ConfigError("model: width must be > 0 and decoder_channels, embedding_dim, embedding_channels >= 1")
        try:
            label_ids_of(m.classes)
        except ValueError as err:
            raise ConfigError(f"model.classes: {err}") from err
        if len(set(m.classes)) != len(m.classes) or len(m.classes) < 2:
            raise ConfigError(f"model.classes must name at least two distinct classes, got {list(m.classes)}")
        if not set(m.instance_classes) <= set(m.classes):
            raise ConfigError(f"model.instance_classes {list(m.instance_classes)} must be among model.classes")
        stuff = [name for name in m.instance_classes if not has_instances(name)]
        if stuff:
            raise ConfigError(f"model.instance_classes: {stuff} have no instances in Cityscapes' ground truth")
        if len(loss.stage_weights) != 5 or min(loss.stage_weights) < 0 or max(loss.stage_weights) <= 0:
            raise ConfigError(f"loss.stage_weights: five weights >= 0 (strides 32 to 2), not all zero, got "
                              f"{list(loss.stage_weights)}")
        if not 0 <= loss.delta_v < loss.delta_d:
            raise ConfigError(f"loss: need 0 <= delta_v < delta_d, got {loss.delta_v} and {loss.delta_d}")
        if min(loss.embedding_weight, loss.alpha, loss.beta, loss.gamma) < 0:
            raise ConfigError("loss: weights must be >= 0")
        for dataset in (*self.train, *self.val.datasets):
            if dataset.kind == "cityscapes" and not dataset.root:
                raise ConfigError("a cityscapes street dataset needs a root")
            if dataset.kind == "synthetic" and (dataset.image_width < 32 or dataset.image_height < 32):
                raise ConfigError(f"synthetic street images must be at least 32x32, got "
                                  f"{dataset.image_width}x{dataset.image_height}")


@dataclass(frozen=True)
class BPRModelConfig:
    """The patch network (models/bpr/network.py): U-Net channels per scale, the patch side in image pixels,
    the side the patches are resized to (the paper: 64 px patches at 128; 64 at 64 halves the cost)."""
    channels: tuple[int, ...] = (16, 32, 64)
    patch_size: int = 64
    input_size: int = 64
    init: str = ""  # start from these weights (a refine-train bpr .safetensors of the same architecture)


@dataclass(frozen=True)
class BPRDataConfig:
    """Scenes whose objects a trained segmenter segments (`segmenter`: an instance or street model file); the
    patches along its masks, with targets from the best-matching ground-truth object, are the samples."""
    segmenter: str = ""
    sticks: tuple[SticksDataConfig, ...] = ()
    street: tuple[StreetDataConfig, ...] = ()
    patches_per_scene: int = 16  # drawn afresh every epoch from each scene's patches


@dataclass(frozen=True)
class BPRValidationConfig:
    """Periodic boundary F of the refined masks on held-back scenes (it selects the best checkpoint)."""
    data: BPRDataConfig = field(default_factory=BPRDataConfig)
    every: int = 0  # iterations between validations; 0: at the end of every epoch


@dataclass(frozen=True)
class BPRTrainConfig:
    model: BPRModelConfig = field(default_factory=BPRModelConfig)
    train: BPRDataConfig = field(default_factory=BPRDataConfig)
    val: BPRValidationConfig = field(default_factory=BPRValidationConfig)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(channel_shuffle=0.0, brightness=0.0,
                                                                         hue_saturation=0.0, blur=0.0, affine=0.0))
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out="runs/bpr"))

    def __post_init__(self) -> None:
        _check_loop((self.train,), self.optim, self.run, self.augment)
        m = self.model
        multiple = 2 ** (len(m.channels) - 1)
        if len(m.channels) < 2 or min(m.channels) < 1 or m.patch_size < 8 or m.input_size % multiple:
            raise ConfigError(f"model: need two or more channel counts >= 1, patch_size >= 8 and input_size a multiple "
                              f"of {multiple}, got {list(m.channels)}, {m.patch_size}, {m.input_size}")
        if any(value != 0.0 for value in (self.augment.channel_shuffle, self.augment.brightness,
                                          self.augment.hue_saturation, self.augment.blur, self.augment.affine)):
            raise ConfigError("augment: patches are cut from the segmenter's view of the scene; only flip applies")
        for where, data in (("train", self.train), ("val.data", self.val.data)):
            scenes = bool(data.sticks or data.street)  # validation is optional, training is not
            if (where == "train" or scenes) and (not data.segmenter or not scenes or data.patches_per_scene < 1):
                raise ConfigError(f"{where}: needs a segmenter, sticks or street scenes and patches_per_scene >= 1")
            if any(d.kind == "disk" and not d.root for d in data.sticks) or \
                    any(d.kind == "cityscapes" and not d.root for d in data.street):
                raise ConfigError(f"{where}: a disk or cityscapes dataset needs a root")


@dataclass(frozen=True)
class LanesTrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: tuple[DatasetConfig, ...] = (DatasetConfig(),)
    val: ValidationConfig = field(default_factory=ValidationConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check_loop(self.train, self.optim, self.run, self.augment)
        if self.model.init and self.model.backbone_weights:
            raise ConfigError("model.init and model.backbone_weights: set one (init replaces every weight, the "
                              "backbone's too)")
        for dataset in (*self.train, *self.val.datasets):
            if dataset.kind != "synthetic" and not dataset.root:
                raise ConfigError(f"a {dataset.kind} dataset needs a root")
            if dataset.category and (dataset.kind != "synthetic" or dataset.category not in CATEGORIES):
                raise ConfigError(f"category {dataset.category!r}: only synthetic datasets take one, and it must be "
                                  f"one of {', '.join(CATEGORIES)}")


def to_dict(config: Any) -> Any:
    """Plain YAML/JSON-ready values (tuples as lists) of a config dataclass."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple):
        return [to_dict(item) for item in config]
    return config


def from_dict(cls: type, data: Any, where: str = "", base: Any = None) -> Any:
    """Build dataclass `cls` from a mapping, checking every key and value type. Keys left out keep the values
    of `base` (default: the dataclass's defaults); a nested section starts from its field's default in the
    parent, so `augment: {flip: 0.5}` changes only flip of a config whose augment default differs from
    AugmentConfig()."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hints[key]):
            values[key] = from_dict(hints[key], value, path, _field_default(fields[key]))
        else:
            values[key] = _coerce(hints[key], value, path)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from err


def _field_default(field: dataclasses.Field) -> Any:
    """The default a dataclass field takes when left out, or None when it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(arg, item, f"{where}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{where}: union types are not supported in configs")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and _EXPONENT.fullmatch(value):
            return float(value)  # YAML 1.1 reads 3e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {hint}")


def apply_overrides(tree: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """The YAML tree with `section.key=value` assignments applied (values parsed as YAML)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {err}") from err
    return tree


class _Runnable(Protocol):
    @property
    def run(self) -> RunConfig: ...


Config = TypeVar("Config", bound=_Runnable)


def _read_tree(path: str | Path) -> dict[str, Any]:
    """The YAML mapping of a config file. A file without settings is an error: it is far likelier a wrong or
    unsaved file than a request for a default run (leave --config out for that)."""
    try:
        tree = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if tree is None:
        raise ConfigError(f"{path}: the config file is empty (leave the config out to train with the defaults)")
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(tree).__name__}")
    return tree


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` laid over it: mappings merge key by key, anything else (lists too) is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else copy.deepcopy(value)
    return out


def load_stages(path: str | Path | None, overrides: Sequence[str] = (),
                kind: type[Config] = LanesTrainConfig) -> list[tuple[str, Config]]:
    """The validated runs a config file describes, in order: [("", config)] for a plain file (None: the
    defaults), each stage's name and config for a recipe (see the module docstring). `overrides` apply to
    every stage; model.init only to the first, since the others start from their previous stage."""
    tree = {} if path is None else _read_tree(path)
    if "stages" not in tree:
        return [("", from_dict(kind, apply_overrides(tree, overrides)))]
    stages = tree.pop("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{path}: stages: expected a list of stages, got {stages!r}")
    current: dict[str, Any] = tree
    done: list[tuple[str, Config]] = []
    for index, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or not isinstance(stage.get("name"), str) or not stage["name"]:
            raise ConfigError(f"{path}: stages[{index}]: expected a mapping with a name")
        name, changes = stage["name"], {key: value for key, value in stage.items() if key != "name"}
        if name in (previous for previous, _ in done):
            raise ConfigError(f"{path}: stage {name}: the name is taken by an earlier stage")
        if done and isinstance(changes.get("model"), Mapping) and "init" in changes["model"]:
            raise ConfigError(f"{path}: stage {name}: model.init is the previous stage's {FINAL_WEIGHTS}; only the "
                              "first stage sets it")
        current = _merged(current, changes)
        resolved = apply_overrides(copy.deepcopy(current), overrides)
        model = resolved.setdefault("model", {})
        if done and isinstance(model, dict):
            model["init"] = str(Path(done[-1][1].run.out) / FINAL_WEIGHTS)
        try:
            config = from_dict(kind, resolved)
        except ConfigError as err:
            raise ConfigError(f"{path}: stage {name}: {err}") from err
        clash = [previous for previous, other in done if other.run.out == config.run.out]
        if clash and not any(item.startswith("run.out=") for item in overrides):  # --set run.out= is for one --stage
            raise ConfigError(f"{path}: stage {name}: run.out {config.run.out} is stage {clash[0]}'s too; each "
                              "stage needs its own")
        done.append((name, config))
    return done


def load_config(path: str | Path | None, overrides: Sequence[str] = (), kind: type[Config] = LanesTrainConfig,
                stage: str = "") -> Config:
    """The validated `kind` config of a YAML file (None: the defaults) with overrides applied; for a recipe,
    that of the stage named `stage`."""
    stages = load_stages(path, overrides, kind)
    names = [name for name, _ in stages]
    if not stage and names != [""]:
        raise ConfigError(f"{path} is a recipe of stages {', '.join(names)}: name one (--stage)")
    if stage not in names:
        raise ConfigError(f"{path}: no stage {stage!r}" + (f"; it has {', '.join(names)}" if names != [""] else
                                                            " (the file has no stages)"))
    return stages[names.index(stage)][1]
