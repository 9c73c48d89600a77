"""Files derived from a model (ONNX exports, int8 versions, TensorRT engines, speed measurements) kept on
disk between runs. Each file is named after everything that changes it, so a stale file is never reused,
and has a `.sha256` sidecar written after it, so a truncated or edited file is rebuilt rather than trusted.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from refine_perception.models.model_file import sha256


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "refine_perception"


def cache_dir(folder: str | Path | None) -> Path:
    return Path(folder) if folder else default_cache_dir()


def slug(text: str) -> str:
    """`text` as a piece of a file name."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` fills a temporary file next to `path`, which then replaces it in one rename, so a crashed
    build or a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_file(path: Path, build: Callable[[Path], None]) -> str:
    """Make sure `path` holds an intact build (building it when missing, stale or damaged); returns its
    SHA-256."""
    sidecar = path.with_name(path.name + ".sha256")
    if path.is_file() and sidecar.is_file():
        digest = sha256(path)
        if sidecar.read_text().strip() == digest:
            return digest
    write_atomically(path, build)
    digest = sha256(path)
    write_atomically(sidecar, lambda tmp: tmp.write_text(digest + "\n"))
    return digest
