"""CPU threads of one network, without touching the other networks of the process.

`torch.set_num_threads` changes the calling thread's OpenMP team size and also the count that threads
started later begin with; several nodes share one process in the one-process launcher, each with its own
worker thread. So a network's thread count is set around each of its calls, on the thread making the
call, and the previous count is put back before the call returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads for the block (0: leave them as they are)."""
    if threads <= 0:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
