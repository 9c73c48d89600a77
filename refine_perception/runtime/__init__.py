"""One inference runtime for every network we ship: a model file in, a callable network out, on torch,
onnxruntime, OpenVINO or TensorRT.

One module per job: `config` (what to run), `kinds` and `model` (reading a model file once), `cache`
(derived files on disk), `export` (ONNX), `quantize` (int8), one module per backend, and `select` (opening a
backend, `auto` by measurement). Nodes, evaluation, benchmarks and `refine-perception engines` all go through
`open_network`.
"""

from refine_perception.runtime.config import BACKENDS, PRECISIONS, BackendError, RuntimeConfig, UnsupportedCombination
from refine_perception.runtime.model import LoadedModel, load_model
from refine_perception.runtime.network import BackendInfo, Network
from refine_perception.runtime.select import load_task_model, open_model, open_network, open_task_network

__all__ = ["BACKENDS", "PRECISIONS", "BackendError", "BackendInfo", "LoadedModel", "Network", "RuntimeConfig",
           "UnsupportedCombination", "load_model", "load_task_model", "open_model", "open_network",
           "open_task_network"]
