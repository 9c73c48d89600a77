"""Eager PyTorch: the reference every other backend is checked against. fp32 anywhere, bf16 on CPUs with
bfloat16 arithmetic (AVX-512 BF16 or AMX) and on CUDA, fp16 on CUDA; on CUDA optionally channels-last memory
and a CUDA graph per batch shape, which removes the per-kernel launch cost that dominates a small network at
batch 1."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch

from refine_perception.core.cpu import cpu_flags
from refine_perception.models.threads import intra_op_threads
from refine_perception.runtime.config import UnsupportedCombination
from refine_perception.runtime.devices import cuda_device
from refine_perception.runtime.model import LoadedModel
from refine_perception.runtime.network import BackendInfo, Network

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


class TorchNetwork(Network):
    def __init__(self, model: LoadedModel, device: str | None = None, precision: str = "fp32",
                 channels_last: bool = False, cuda_graph: bool = False, threads: int = 0) -> None:
        super().__init__(model)
        cuda = cuda_device(device)
        if cuda is None and (precision == "fp16" or channels_last or cuda_graph):
            raise UnsupportedCombination("torch on the CPU runs fp32 or bf16, without channels-last or CUDA graphs")
        if cuda is None and precision == "bf16" and not cpu_has_bf16():
            raise UnsupportedCombination("bf16 on the CPU needs AVX-512 BF16 or AMX; this CPU would emulate it slowly")
        self.threads = threads
        self.device = cuda or torch.device("cpu")
        # on the CPU bf16 runs as autocast (fp32 weights, bf16 matmuls/convolutions), which keeps the
        # reductions and the head's decoding in fp32; on CUDA the weights themselves are cast
        self.autocast = cuda is None and precision == "bf16"
        self.dtype = torch.float32 if cuda is None else DTYPES[precision]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # the loaded module stays the fp32 CPU one the exports and other backends read: a copy moves
        module = model.module if cuda is None else copy.deepcopy(model.module)
        self.module = module.to(self.device, self.dtype).to(memory_format=self.memory_format).eval()
        self.cuda_graph = cuda_graph
        self._graph: tuple[torch.cuda.CUDAGraph, torch.Tensor, Sequence[torch.Tensor]] | None = None
        name = f"{self.device} ({torch.cuda.get_device_name(self.device)})" if cuda is not None else "cpu"
        provider = "eager" + (", channels-last" if channels_last else "") + (", CUDA graph" if cuda_graph else "")
        self.info = BackendInfo("torch", name, precision, f"torch {torch.__version__} {provider}")

    def _forward(self, images: torch.Tensor) -> Sequence[torch.Tensor]:
        autocast = torch.autocast("cpu", torch.bfloat16) if self.autocast else nullcontext()
        with autocast:
            out = self.module(images)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        with intra_op_threads(self.threads):
            if not self.cuda_graph:
                outputs = self._forward(self._to_device(images))
            else:
                if self._graph is None or self._graph[1].shape != images.shape:
                    self._graph = self._capture(self._to_device(images))
                graph, static_input, outputs = self._graph
                static_input.copy_(self._to_device(images))
                graph.replay()
            return [out.float().cpu().numpy() for out in outputs]

    def _capture(self, example: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, Sequence[torch.Tensor]]:
        """Record the forward for this batch shape, returning the graph and its fixed input and output
        tensors; a few warm-up runs on a side stream first, as capture requires (lazy cuDNN/cuBLAS
        initialisation must not happen inside it)."""
        static_input = example.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._forward(static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._forward(static_input)
        return graph, static_input, outputs
