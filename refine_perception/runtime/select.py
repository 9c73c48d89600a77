"""Opening a model file on a backend, and `auto`: the fastest backend for this machine, by measurement.

`auto` times every backend that can run the asked precision on the device (onnxruntime and OpenVINO on the
CPU, and torch where it runs that precision; TensorRT and torch on a GPU), keeps the fastest and records the
choice per machine (CPU model and instruction set, GPU, library versions), model, precision and thread
count in the cache folder, so later starts open the winner directly. Why not a fixed order: which CPU
runtime wins depends on the CPU (VNNI/AMX or AVX2 only) and on the network.
"""

from __future__ import annotations

import json
import platform
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch

from refine_perception.core.cpu import describe as describe_cpu
from refine_perception.core.stats import interleaved_median_ms
from refine_perception.models.model_file import ModelFileError
from refine_perception.runtime import onnxruntime_backend, openvino_backend, tensorrt_backend
from refine_perception.runtime.cache import cache_dir, locked, write_atomically
from refine_perception.runtime.config import BackendError, RuntimeConfig, UnsupportedCombination
from refine_perception.runtime.devices import on_gpu
from refine_perception.runtime.export import onnx_file
from refine_perception.runtime.model import LoadedModel, load_model
from refine_perception.runtime.network import Network
from refine_perception.runtime.onnxruntime_backend import OnnxRuntimeNetwork
from refine_perception.runtime.openvino_backend import OpenVinoNetwork
from refine_perception.runtime.quantize import int8_onnx_file
from refine_perception.runtime.tensorrt_backend import TensorRTNetwork
from refine_perception.runtime.torch_backend import TorchNetwork, cpu_has_bf16

SELECTION_FILE = "backend-selection.json"
DEFAULT = RuntimeConfig()


def open_network(path: str | Path, config: RuntimeConfig = DEFAULT) -> Network:
    """The model at `path` on the backend and precision `config` asks for (exporting, quantising and
    building cached files as needed). Raises ModelFileError, BackendError or UnsupportedCombination."""
    return open_model(load_model(path), config)


def load_task_model(path: str | Path, file_format: str | tuple[str, ...]) -> LoadedModel:
    """`load_model` for a task that takes one kind of model, or one of a few (`file_format` a tuple): a file
    of another kind (a lane model given to the instance node) is a ModelFileError naming both."""
    formats = (file_format,) if isinstance(file_format, str) else file_format
    model = load_model(path)
    if model.kind.file_format not in formats:
        raise ModelFileError(f"{path}: a {model.kind.name} model file, not {' or '.join(formats)}")
    return model


def open_task_network(path: str | Path, file_format: str | tuple[str, ...],
                      config: RuntimeConfig = DEFAULT) -> Network:
    """`open_network` of a file of the task's kind(s) (see `load_task_model`)."""
    return open_model(load_task_model(path, file_format), config)


def open_model(model: LoadedModel, config: RuntimeConfig = DEFAULT) -> Network:
    options = candidates(model, config)
    if len(options) == 1:
        return open_backend(model, *options[0], config)
    return _fastest(model, options, config)


def candidates(model: LoadedModel, config: RuntimeConfig) -> list[tuple[str, str]]:
    """The (backend, precision) pairs that can serve `config` here, the preferred one first."""
    gpu = on_gpu(config.device)
    precision = config.precision if config.precision != "auto" else _auto_precision(model, config, gpu)
    if config.backend != "auto":
        return [(config.backend, precision)]
    if precision == "int8":
        names = ["onnxruntime", "openvino"]
    elif gpu:
        names = ["tensorrt", "torch"] if precision in ("fp16", "fp32") else ["torch"]
    elif _onnxruntime_gpu(config) and precision == "fp32":
        names = ["onnxruntime"]  # onnxruntime-gpu next to a torch that sees no GPU
    elif precision == "bf16":
        names = ["torch", "openvino"] if cpu_has_bf16() else []
    elif precision == "fp32":
        names = ["onnxruntime", "openvino", "torch"]
    else:
        names = []
    available = {"openvino": openvino_backend.available(), "tensorrt": tensorrt_backend.available()}
    options = [(name, precision) for name in names if available.get(name, True)]
    if not options:
        raise UnsupportedCombination(f"no backend here runs {precision} on {'the GPU' if gpu else 'the CPU'}"
                                     + (" (fp16 needs a CUDA device)" if precision == "fp16" else ""))
    return options


def _auto_precision(model: LoadedModel, config: RuntimeConfig, gpu: bool) -> str:
    """fp16 where a GPU runs the network; on the CPU int8 where the kind showed it keeps its accuracy."""
    cpu_choice = "int8" if model.kind.int8_auto else "fp32"
    if config.backend == "tensorrt":
        return "fp16"
    if config.backend == "torch":
        return "fp16" if gpu else "fp32"
    if config.backend == "onnxruntime":
        return "fp32" if gpu or _onnxruntime_gpu(config) else cpu_choice
    if config.backend == "openvino":
        return cpu_choice
    return "fp16" if gpu else cpu_choice


def _onnxruntime_gpu(config: RuntimeConfig) -> bool:
    return config.device != "cpu" and not torch.cuda.is_available() and onnxruntime_backend.has_cuda()


def open_backend(model: LoadedModel, backend: str, precision: str, config: RuntimeConfig) -> Network:
    folder = config.cache_dir
    if precision == "int8" and backend not in ("onnxruntime", "openvino"):
        raise UnsupportedCombination(f"int8 runs on onnxruntime or openvino, not {backend}")
    if backend != "torch" and (config.channels_last or config.cuda_graph):
        raise UnsupportedCombination(f"channels_last and cuda_graph are torch options, not {backend}'s")
    if backend == "torch":
        return TorchNetwork(model, config.device, precision, config.channels_last, config.cuda_graph, config.threads)
    if backend == "tensorrt":
        return TensorRTNetwork(model, precision, config.max_batch, config.device, folder)
    if precision in ("fp16", "bf16") and backend == "onnxruntime":
        raise UnsupportedCombination(f"the onnxruntime backend runs fp32 or int8, not {precision}")
    device = config.device
    if precision == "int8":
        if device not in (None, "cpu"):
            raise UnsupportedCombination(f"int8 runs on the CPU, not {device}")
        device = "cpu"
        # OpenVINO's oneDNN halves the weight scale itself where the CPU lacks an int8 dot product, so it
        # reads 8-bit weights unless 7 are asked for
        bits = (config.int8_weight_bits or 8) if backend == "openvino" else config.int8_weight_bits
        onnx_path = int8_onnx_file(model, folder, bits)
    else:
        onnx_path = onnx_file(model, folder)[0]
    network_class = OnnxRuntimeNetwork if backend == "onnxruntime" else OpenVinoNetwork
    return network_class(model, onnx_path, precision, device, config.threads, folder)


def machine() -> str:
    """What a backend's speed depends on besides the model: CPU kind, GPU, library versions."""
    parts = [describe_cpu(), platform.machine(), f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name())
    import onnxruntime

    parts.append(f"onnxruntime {onnxruntime.__version__}")
    if openvino_backend.available():
        import openvino

        parts.append(f"openvino {openvino.__version__}")
    if tensorrt_backend.available():
        import tensorrt

        parts.append(f"tensorrt {tensorrt.__version__}")
    return "; ".join(parts)


def selection_key(model: LoadedModel, options: list[tuple[str, str]], config: RuntimeConfig) -> str:
    names = ",".join(f"{name}:{precision}" for name, precision in options)
    return (f"{model.kind.name}-{model.digest[:16]}-v{model.kind.export_version} [{names}] device={config.device} "
            f"threads={config.threads} int8_weight_bits={config.int8_weight_bits} max_batch={config.max_batch} "
            f"channels_last={config.channels_last} cuda_graph={config.cuda_graph} | {machine()}")


def _read_selections(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded_choice(path: Path, key: str, options: list[tuple[str, str]]) -> tuple[str, str] | None:
    entry = _read_selections(path).get(key)
    chosen = entry.get("choice") if isinstance(entry, dict) else None
    if isinstance(chosen, list) and tuple(chosen) in options:
        return chosen[0], chosen[1]
    return None


def _fastest(model: LoadedModel, options: list[tuple[str, str]], config: RuntimeConfig) -> Network:
    """The fastest of `options`, from the record when there is one, else measured (under a lock on the
    record, so nodes starting together neither measure on top of each other nor lose each other's entries)."""
    path = cache_dir(config.cache_dir) / SELECTION_FILE
    key = selection_key(model, options, config)
    with locked(path):
        chosen = _recorded_choice(path, key, options)
        if chosen is not None:
            return open_backend(model, *chosen, config)
        network, timings, complete = _measure(model, options, config)
        if complete:  # a candidate that failed (out of memory, a build another process holds) may run next time
            selections = _read_selections(path)
            selections[key] = {"choice": [network.info.name, network.info.precision], "median_ms": timings}
            try:
                write_atomically(path, lambda tmp: tmp.write_text(json.dumps(selections, indent=2) + "\n"))
            except OSError as err:  # a read-only cache costs a measurement at each start, not the network
                warnings.warn(f"cannot record the backend choice in {path}: {err}", stacklevel=2)
    network.selection = timings
    return network


def _measure(model: LoadedModel, options: list[tuple[str, str]], config: RuntimeConfig
             ) -> tuple[Network, dict[str, float], bool]:
    """The fastest candidate that opens, every candidate's median ms, and whether all of them opened."""
    batch = model.example_batch()
    opened: dict[str, Network] = {}
    problems = []
    for name, precision in options:
        try:
            opened[f"{name}:{precision}"] = open_backend(model, name, precision, config)
        except Exception as err:  # any failure of one candidate leaves the others to choose from
            problems.append(f"{name} {precision}: {err}")
    if not opened:
        raise BackendError("no backend could run the model: " + "; ".join(problems))
    measured = interleaved_median_ms({key: partial(network, batch) for key, network in opened.items()})
    network = opened[min(measured, key=measured.__getitem__)]
    return network, {key: round(ms, 3) for key, ms in measured.items()}, not problems
