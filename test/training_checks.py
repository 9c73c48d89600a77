"""Running `refine-train` as a user does (a subprocess of this interpreter), shared by the training tests."""

from __future__ import annotations

import subprocess
import sys


def refine_train(*args: str, timeout: float = 600) -> str:
    """The command's stdout; a non-zero exit fails the test with its stderr."""
    done = subprocess.run([sys.executable, "-m", "refine_perception.training", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout
