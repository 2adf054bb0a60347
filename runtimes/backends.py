"""The backend registry: one :class:`Backend` per runtime, the only place a backend is named.

The manifest reader, the runner factory, ``export``, the Triton writer, ``bench`` and the CLI all look a
backend up here. A backend is two halves, both named by import path and imported only when used: a
torch-free *runner* class (``activate / infer / deactivate``, built from a manifest) and a *builder* class
(:class:`dcube_edge.export.builder.Builder`). Adding a backend: write its two modules, add one ``register``
line below, its tests, its README row and its pyproject extra.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from dcube_edge.errors import BackendUnavailable, UserError


@dataclass(frozen=True)
class Backend:
    name: str
    runner: str  # "module:Class" of the runner; the class has ``from_manifest(manifest, threads, device, profile)``
    builder: str  # "module:Class" of the export.builder.Builder that builds its engines
    packages: tuple[str, ...]  # what the runner imports (checked with importlib, nothing is imported)
    build_packages: tuple[str, ...]  # what building additionally needs
    install: str  # one line: how to get the packages
    precisions: tuple[str, ...]
    model_files: tuple[str, ...]  # the model file first, then what it needs beside it (Triton copies all)
    triton: str | None  # config.pbtxt platform/backend line; None: Triton cannot serve this backend
    gpu: bool = False  # runs on a GPU (Triton instance kind)
    matrix: bool = True  # `bench --matrix` builds its engines (False: the torch reference, timed as its own rows)
    vendor_benchmark: str | None = None  # "module:function(manifest, batch, seconds, threads) -> median ms" of
    # the vendor's own benchmark tool on the same model file, for `bench --vs-benchmark-app`
    summary: str = ""  # one line for --help and the README

    def missing(self, build: bool = False) -> str | None:
        """None when the packages are importable here, else which one is not."""
        for pkg in self.packages + (self.build_packages if build else ()):
            if importlib.util.find_spec(pkg) is None:
                return f"{self.name} needs {pkg}, which is not installed"
        return None

    def require(self, build: bool = False) -> None:
        reason = self.missing(build)
        if reason:
            raise BackendUnavailable(f"{reason}: {self.install}")

    def runner_class(self) -> type:
        """The :class:`~dcube_edge.runtimes.base.Runner` subclass named by ``runner``, imported now."""
        module, cls = self.runner.split(":")
        return getattr(importlib.import_module(module), cls)

    def make_builder(self) -> Any:
        """An instance of the :class:`~dcube_edge.export.builder.Builder` named by ``builder`` (its packages
        checked first)."""
        self.require(build=True)
        module, cls = self.builder.split(":")
        return getattr(importlib.import_module(module), cls)()


REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    if backend.name in REGISTRY:
        raise ValueError(f"backend {backend.name!r} is registered twice")
    REGISTRY[backend.name] = backend
    return backend


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Backend:
    """The backend called ``name``, or a ValueError naming the choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}") from None


def offering(precision: str) -> list[str]:
    return [b.name for b in REGISTRY.values() if precision in b.precisions]


register(Backend(
    "onnxruntime", "dcube_edge.runtimes.ort:OnnxRuntimeRunner", "dcube_edge.export.onnxruntime:OnnxRuntimeBuilder",
    packages=("onnxruntime",), build_packages=(),
    install="pip install onnxruntime (GPU: onnxruntime-gpu); fp16 export also needs 'dcube-edge[quant]'",
    precisions=("fp32", "fp16", "int8"), model_files=("model.onnx",), triton='platform: "onnxruntime_onnx"',
    summary="ONNX Runtime, CUDA provider first when present, else CPU; precision carried by the ONNX"))
register(Backend(
    "openvino", "dcube_edge.runtimes.ov:OpenVINORunner", "dcube_edge.export.openvino:OpenVINOBuilder",
    packages=("openvino",), build_packages=("nncf",), install="pip install 'dcube-edge[openvino]' (openvino, nncf)",
    precisions=("fp32", "fp16", "bf16", "int8"), model_files=("model.xml", "model.bin"), triton='backend: "openvino"',
    vendor_benchmark="dcube_edge.runtimes.ov:benchmark_app_ms",
    summary="OpenVINO IR on the CPU; bf16/fp16 an inference-precision hint chosen from the CPU's units, int8 by NNCF"))
register(Backend(
    "tensorrt", "dcube_edge.runtimes.trt:TensorRTRunner", "dcube_edge.export.tensorrt:TensorRTBuilder",
    packages=("tensorrt",), build_packages=(),
    install="on a CUDA workstation: pip install 'dcube-edge[tensorrt]' (tensorrt, cuda-python)",
    precisions=("fp32", "fp16", "int8"), model_files=("model.plan",), triton='platform: "tensorrt_plan"', gpu=True,
    summary="TensorRT 10/11 plan, strongly typed (precision from the ONNX's types and Q/DQ), one batch profile"))
register(Backend(
    "torch", "dcube_edge.torch_backend:TorchRunner", "dcube_edge.export.pytorch:TorchBuilder",
    packages=("torch", "safetensors"), build_packages=(), install="pip install 'dcube-edge[train]' (torch, safetensors)",
    precisions=("fp32", "bf16"), model_files=("model.safetensors", "config.json"), triton=None, matrix=False,
    summary="the PyTorch model itself (eager; bf16 = CPU autocast): the reference that evaluate, parity and bench share"))
