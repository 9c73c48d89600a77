"""Files derived from a model (ONNX exports, int8 versions, TensorRT engines, speed measurements) kept on
disk between runs. Each file is named after everything that changes it, so a stale file is never reused,
and has a `.sha256` sidecar written after it, so a truncated or half-written file is rebuilt rather than
trusted. Builds take a lock per file, so nodes starting together build each file once.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    build or a concurrent reader never sees half a file. The file gets the umask's permissions (not
    mkstemp's owner-only ones), so files prepared by one user (`refine-perception engines` at install time)
    are readable by the nodes' user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` for the block: processes sharing the cache folder build or
    measure one at a time (the lock goes with the process, so a killed one never leaves it held)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _intact(path: Path, sidecar: Path) -> str | None:
    if path.is_file() and sidecar.is_file():
        digest = sha256(path)
        if sidecar.read_text().strip() == digest:
            return digest
    return None


def cached_file(path: Path, build: Callable[[Path], None]) -> str:
    """Make sure `path` holds an intact build (building it when missing or damaged: the sidecar catches a
    truncated or partly written file, not a deliberate edit that rewrites the sidecar too); returns its
    SHA-256. A build runs under the file's lock, and a file another process built meanwhile is taken as is."""
    sidecar = path.with_name(path.name + ".sha256")
    digest = _intact(path, sidecar)
    if digest is not None:
        return digest
    with locked(path):
        digest = _intact(path, sidecar)
        if digest is None:
            write_atomically(path, build)
            digest = sha256(path)
            write_atomically(sidecar, lambda tmp: tmp.write_text(digest + "\n"))
    return digest
