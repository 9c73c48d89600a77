"""benchmarks/cpuid_mask: a command run under it sees an AVX2-only CPU (torch's capability, the cpuid
instruction in new threads and forks), and a segfault that is not a cpuid still kills the process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cpuid_mask import masked_env, unsupported_reason  # noqa: E402

pytestmark = pytest.mark.skipif(unsupported_reason() is not None, reason=f"cpuid masking: {unsupported_reason()}")


def masked(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=masked_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_torch_sees_avx2() -> None:
    result = masked("-c", "import torch; print(torch.backends.cpu.get_cpu_capability())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "AVX2"


def test_cpuid_masked_in_main_thread_new_threads_and_forks() -> None:
    result = masked("-m", "benchmarks.cpuid_mask.probe", "--only", "cpuid")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["leaf 7 (main thread)"] == "avx2"
    assert seen["same in a new thread"] and seen["same in a fork"]
    assert seen["cpuid traps answered"] > 0


def test_segfault_that_is_not_cpuid_still_crashes() -> None:
    result = masked("-c", "import ctypes; ctypes.string_at(0)")
    assert result.returncode == -signal.SIGSEGV


def test_a_later_sigsegv_handler_sits_behind_the_mask() -> None:
    """faulthandler installs its own SIGSEGV handler (as pytest does): cpuid still answers, and a real
    fault still reaches faulthandler and kills the process."""
    result = masked("-X", "faulthandler", "-c", "import numpy, torch; print(torch.backends.cpu.get_cpu_capability())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "AVX2"
    result = masked("-X", "faulthandler", "-c", "import ctypes; ctypes.string_at(0)")
    assert result.returncode == -signal.SIGSEGV
    assert "Segmentation fault" in result.stderr
