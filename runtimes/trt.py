"""TensorRT runner (TensorRT 10.x/11.x): deserialise the plan, name-based tensor addresses,
``execute_async_v3`` on a CUDA stream, pinned host buffers sized for the profile's max batch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dcube_edge.errors import BackendUnavailable

from .base import Runner
from .cuda_mem import device_memory
from .spec import GraphSpec

INSTALL = "TensorRT is not installed: on a CUDA workstation run pip install 'dcube-edge[tensorrt]' (tensorrt, cuda-python)"


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable(INSTALL) from None
    return trt


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, plan: str | Path, spec: GraphSpec | None = None):
        super().__init__(spec)
        self.plan = Path(plan)

    @classmethod
    def from_manifest(cls, manifest, threads=None, device=None, profile=False) -> TensorRTRunner:
        """``threads`` and ``profile`` do not apply (a GPU plan; profile with Nsight or trtexec)."""
        return cls(manifest.model_file, spec=manifest.spec)

    def activate_impl(self) -> None:
        trt = import_tensorrt()
        self.mem = device_memory()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.plan.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialise {self.plan}: built with another TensorRT "
                               "version or GPU; re-run `dcube-edge export --backend tensorrt` on this machine")
        self.context = self.engine.create_execution_context()
        self.stream = self.mem.stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.max_batch = min(int(self.engine.get_tensor_profile_shape(n, 0)[2][0]) for n in inputs)
        self.tensors: dict[str, dict] = {}
        for name in names:
            if name in inputs:
                max_shape = tuple(self.engine.get_tensor_profile_shape(name, 0)[2])
            else:  # dynamic batch axis reads -1: size the buffer for the profile's max batch
                max_shape = (self.max_batch,) + tuple(self.engine.get_tensor_shape(name))[1:]
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            host = self.mem.pinned(max_shape, dtype)
            device = self.mem.malloc(host.nbytes)
            self.context.set_tensor_address(name, device)
            self.tensors[name] = {"input": name in inputs, "dtype": dtype, "host": host, "device": device}

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = None
        for name, arr in feed.items():
            t = self.tensors[name]
            batch = arr.shape[0]
            if batch > self.max_batch:
                raise ValueError(f"batch {batch} is above this engine's profile maximum {self.max_batch}")
            host = t["host"].reshape(-1)[: arr.size].reshape(arr.shape)
            np.copyto(host, arr.astype(t["dtype"], copy=False))
            self.context.set_input_shape(name, arr.shape)
            self.mem.htod(t["device"], host, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        outputs = {}
        for name, t in self.tensors.items():
            if t["input"]:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            host = t["host"].reshape(-1)[: int(np.prod(shape))].reshape(shape)
            self.mem.dtoh(host, t["device"], self.stream)
            outputs[name] = host
        self.mem.sync(self.stream)
        return {k: v.astype(np.float32, copy=True) for k, v in outputs.items()}

    def deactivate_impl(self) -> None:
        for t in self.tensors.values():
            self.mem.free(t["device"])
        if hasattr(self.mem, "free_pinned"):
            self.mem.free_pinned()
        self.mem.destroy_stream(self.stream)
        del self.context, self.engine, self.runtime
