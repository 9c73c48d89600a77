"""What every training set shares: several configured sources read as one, and augmentation that depends
on nothing but (seed, epoch, sample index), so the stream is the same for any worker count and after any
interruption (exact resumption)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from torch.utils.data import Dataset


class Source(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class SceneSource:
    """(BGR image, uint16 id map) pairs of one configured dataset: `stored` scenes read from disk, or, with
    `stored` None, `size` scenes rendered from a seed; `limit` > 0 keeps the first `limit`. Subclasses give
    scene `index` in `scene`, which only ever sees a valid index."""

    def __init__(self, stored: int | None, size: int, limit: int) -> None:
        available = size if stored is None else stored
        self.length = min(available, limit) if limit > 0 else available

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(f"scene {index} of a source with {self.length}")
        return self.scene(index)

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class ConcatenatedSources(Dataset):
    """Sources concatenated; subclasses turn an item into a training sample in `__getitem__`."""

    def __init__(self, sources: Sequence[Source], seed: int = 0) -> None:
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(source) for source in self.sources])
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def locate(self, index: int) -> tuple[Any, int]:
        """The source of sample `index` and the index within it."""
        which = int(np.searchsorted(self.offsets, index, side="right")) - 1
        if not 0 <= which < len(self.sources):
            raise IndexError(f"sample {index} of a training set with {len(self)}")
        return self.sources[which], index - int(self.offsets[which])

    def rng(self, index: int) -> np.random.Generator:
        """The augmentation generator of sample `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])
