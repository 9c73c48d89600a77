"""Run a command as if this x86-64 CPU had AVX2 but no AVX-512, VNNI, AMX or BF16 (e.g. AMD EPYC Rome/Milan).

onnxruntime (MLAS), torch (ATen's cpuinfo, oneDNN), OpenVINO and numpy pick their kernels by asking the
`cpuid` instruction when they load. On a CPU with CPUID faulting (`cpuid_fault` in /proc/cpuinfo) Linux can
make `cpuid` trap; cpuid_mask.c, preloaded into the command, answers each trap with the real result less the
AVX-512/VNNI/AMX/BF16/AVX10 bits. It is built on first use with the system `cc` into
~/.cache/refine_perception/cpuid_mask/.

    ./dev run python -m benchmarks.cpuid_mask --check                 # what masked and unmasked processes see
    ./dev run python -m benchmarks.cpuid_mask python -m benchmarks.bench_clrnet --backbones resnet18

From Python: `subprocess.run(cmd, env=masked_env())`, or `run(cmd)`.

What the masked process still sees of the real CPU: /proc/cpuinfo (so refine_perception.core.cpu still
reports VNNI; the library sets REFINE_CPU_MASKED_FLAGS to the hidden flags for it to subtract), xgetbv
(XCR0), the vendor string, cache sizes and the core's speed. Statically linked programs and children
started with a cleaned environment are not masked.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from refine_perception.runtime.cache import default_cache_dir

SOURCE = Path(__file__).with_name("cpuid_mask.c")
# glibc picks its string functions in ld.so, before the preloaded constructor runs: hide AVX-512 there too
GLIBC_HWCAPS = "glibc.cpu.hwcaps=-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL,-AVX512ER,-AVX512PF"

def cache_dir() -> Path:
    return default_cache_dir() / "cpuid_mask"


def unsupported_reason() -> str | None:
    """Why masking cannot work here, or None where it can."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return f"needs x86-64 Linux, not {platform.system()} {platform.machine()}"
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "cpuid_fault" not in flags:
        return "the CPU (or hypervisor) offers no CPUID faulting: no cpuid_fault in /proc/cpuinfo"
    if not shutil.which(os.environ.get("CC", "cc")):
        return "no C compiler (cc)"
    return None


def library_path() -> Path:
    """The compiled preload library, built on first use (keyed by the source's hash)."""
    source = SOURCE.read_bytes()
    target = cache_dir() / f"libcpuid_mask-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    compiler = os.environ.get("CC", "cc")
    result = subprocess.run([compiler, "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE), "-ldl"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{compiler} failed to build {SOURCE.name}:\n{result.stderr}")
    os.replace(tmp, target)  # atomic: parallel first uses each build, one wins
    return target


def masked_env(env: Mapping[str, str] | None = None, glibc: bool = True, strict: bool = True) -> dict[str, str]:
    """`env` (default: this process's) plus what makes a child process masked: LD_PRELOAD of the library,
    GLIBC_TUNABLES hiding AVX-512 from glibc (`glibc`), and exit status 97 where masking fails (`strict`)."""
    reason = unsupported_reason()
    if reason:
        raise RuntimeError(f"cannot mask cpuid: {reason}")
    out = dict(os.environ if env is None else env)
    library = str(library_path())
    out["LD_PRELOAD"] = " ".join(p for p in (library, out.get("LD_PRELOAD", "")) if p)
    if glibc:
        out["GLIBC_TUNABLES"] = ":".join(t for t in (out.get("GLIBC_TUNABLES", ""), GLIBC_HWCAPS) if t)
    if strict:
        out["CPUID_MASK_STRICT"] = "1"
    return out


def run(command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(command) under the mask; `env` in kwargs is the base environment."""
    env = masked_env(kwargs.pop("env", None))
    return subprocess.run(list(command), env=env, **kwargs)
