"""What this CPU can do, for choices and figures that depend on it.

int8 inference differs between x86 CPUs: with AVX-512 VNNI, AVX-VNNI or AMX, onnxruntime multiplies
u8 x s8 with 32-bit accumulation; on AVX2 alone it adds pairs of products in 16 bits first (vpmaddubsw),
which saturates for large weights unless they are quantised to 7 bits (onnxruntime's `reduce_range`).
Benchmarks print `describe()` so figures from different machines are never mixed up.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first CPU's entries of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        entries[key.strip()] = value.strip()
    return entries


MASKED_FLAGS_VAR = "REFINE_CPU_MASKED_FLAGS"  # set by benchmarks/cpuid_mask, which hides them from cpuid


def masked_flags() -> frozenset[str]:
    """Flags this process's libraries cannot see: benchmarks/cpuid_mask makes this CPU look AVX2-only to
    cpuid (which onnxruntime, oneDNN and torch read) but /proc/cpuinfo still lists them."""
    return frozenset(os.environ.get(MASKED_FLAGS_VAR, "").split())


def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU as the process's libraries see them (empty where Linux does not
    report them)."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split()) - masked_flags()


def has_int8_dot_product() -> bool:
    """True where onnxruntime's x86 int8 kernels accumulate without 16-bit saturation (or on non-x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    return any(flag in cpu_flags() for flag in VNNI_FLAGS)


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def describe() -> str:
    """One line naming the CPU and the instruction sets that change our figures, e.g.
    'Intel(R) Xeon(R) Processor, 2 cores: avx2 fma avx512f avx512_vnni amx_int8 (int8 dot product: yes)'."""
    flags = cpu_flags()
    shown = " ".join(flag for flag in SHOWN_FLAGS if flag in flags) or "no x86 vector flags read"
    masked = " [features hidden from cpuid by benchmarks/cpuid_mask]" if masked_flags() else ""
    return (f"{cpu_model()}, {os.cpu_count()} cores: {shown} "
            f"(int8 dot product: {'yes' if has_int8_dot_product() else 'no, AVX2 only'}){masked}")
