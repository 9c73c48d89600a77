"""What this process's libraries believe about the CPU, as one JSON object on stdout (run by `--check`
once without and once with the mask). Each probe is optional: a missing library reads "not installed".

    python -m benchmarks.cpuid_mask.probe [--only cpuid,torch,onednn,numpy,onnxruntime,openvino,core]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import threading

from refine_perception.core.cpu import MASKED_FLAGS_VAR

PROBES = ("cpuid", "torch", "onednn", "numpy", "onnxruntime", "openvino", "core")

# void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]), x86-64 System V:
# push rbx; mov eax,edi; mov ecx,esi; mov r8,rdx; cpuid; mov [r8],eax; mov [r8+4],ebx; mov [r8+8],ecx;
# mov [r8+12],edx; pop rbx; ret
_CPUID_CODE = bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3")
_cpuid_page = None


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """The `cpuid` instruction itself, run from Python (so it traps where the mask is on)."""
    global _cpuid_page
    if _cpuid_page is None:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_CPUID_CODE)
        _cpuid_page = page
    address = ctypes.addressof(ctypes.c_char.from_buffer(_cpuid_page))
    function = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))(address)
    out = (ctypes.c_uint32 * 4)()
    function(leaf, subleaf, out)
    return tuple(out)


def _bits(value: int, names: dict[int, str]) -> list[str]:
    return [name for bit, name in names.items() if value >> bit & 1]


LEAF7_EBX = {5: "avx2", 16: "avx512f", 17: "avx512dq", 30: "avx512bw", 31: "avx512vl"}
LEAF7_ECX = {11: "avx512_vnni"}
LEAF7_EDX = {22: "amx_bf16", 23: "avx512_fp16", 24: "amx_tile", 25: "amx_int8"}
LEAF7_1_EAX = {4: "avx_vnni", 5: "avx512_bf16"}
LEAF7_1_EDX = {19: "avx10"}


def cpuid_features() -> list[str]:
    _, ebx, ecx, edx = cpuid(7, 0)
    eax1, _, _, edx1 = cpuid(7, 1)
    return (_bits(ebx, LEAF7_EBX) + _bits(ecx, LEAF7_ECX) + _bits(edx, LEAF7_EDX) + _bits(eax1, LEAF7_1_EAX)
            + _bits(edx1, LEAF7_1_EDX))


def probe_cpuid() -> dict:
    seen: dict[str, list[str]] = {"main thread": cpuid_features()}
    thread = threading.Thread(target=lambda: seen.__setitem__("new thread", cpuid_features()))
    thread.start()
    thread.join()
    pid = os.fork()
    if pid == 0:  # the child reports through its exit status: 0 where it sees what its parent sees
        os._exit(0 if cpuid_features() == seen["main thread"] else 1)
    _, status = os.waitpid(pid, 0)
    result = {"leaf 7 (main thread)": " ".join(seen["main thread"]),
              "same in a new thread": seen["new thread"] == seen["main thread"],
              "same in a fork": os.waitstatus_to_exitcode(status) == 0}
    library = next((p for p in os.environ.get("LD_PRELOAD", "").split() if "cpuid_mask" in p), None)
    if library:
        lib = ctypes.CDLL(library)  # already loaded: the same handle, no second constructor
        lib.cpuid_mask_trap_count.restype = ctypes.c_ulong
        result["cpuid traps answered"] = lib.cpuid_mask_trap_count()
    return result


def probe_torch() -> dict:
    import torch

    return {"torch cpu capability": torch.backends.cpu.get_cpu_capability()}


def probe_onednn() -> dict:
    """oneDNN's ISA, from its verbose line (printed once, at the first primitive)."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); c = torch.nn.Conv2d(64, 64, 3)\n"
            "with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), torch.no_grad():\n"
            "    c(torch.rand(1, 64, 56, 56))")
    # a child process: it is masked again by LD_PRELOAD after execve, which this also shows
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = (child.stdout + child.stderr).splitlines()
    isa = next((line.split("isa:", 1)[1] for line in lines if "isa:" in line), "no verbose line")
    return {"oneDNN isa (torch)": isa.strip()}


def probe_numpy() -> dict:
    import numpy as np

    try:
        features = np._core._multiarray_umath.__cpu_features__
    except AttributeError:  # numpy < 2
        features = np.core._multiarray_umath.__cpu_features__
    return {"numpy dispatch": " ".join(name for name in ("AVX2", "AVX512F", "AVX512_SKX", "AVX512_SPR") if features.get(name))}


def probe_onnxruntime() -> dict:
    """MLAS has no query; its u8 x s8 GEMM tells: exact with VNNI/AMX, saturated (16-bit pair sums) on AVX2."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = 16, 64, 16
    a = np.full((m, k), 255, np.uint8)
    b = np.full((k, n), 127, np.int8)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
                              [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    y = session.run(None, {"A": a})[0]
    exact = bool(np.array_equal(y, a.astype(np.int32) @ b.astype(np.int32)))
    return {"onnxruntime u8s8 GEMM": "exact (VNNI/AMX kernel)" if exact else "saturated (AVX2 kernel)"}


def probe_openvino() -> dict:
    import openvino as ov

    core = ov.Core()
    return {"openvino capabilities": " ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
            "openvino inference precision": str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))}


def probe_core() -> dict:
    from refine_perception.core.cpu import describe

    return {"core.cpu.describe() (/proc/cpuinfo)": describe(),
            MASKED_FLAGS_VAR: os.environ.get(MASKED_FLAGS_VAR, "(unset)")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PROBES))
    args = parser.parse_args()
    result: dict[str, object] = {}
    for name in args.only.split(","):
        try:
            result.update(globals()[f"probe_{name}"]())
        except ImportError as error:
            result[name] = f"not installed ({error.name})"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
