"""ONNX Runtime build half: the engine is the precision's ONNX itself (fp16 mixed, int8 Q/DQ), which
ONNX Runtime runs on the CPU provider or, in a GPU build, on CUDA."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .build import BuildJob


def check(precision: str) -> None:
    """Every registered precision builds here; there is no device hint."""
    return None


def build(job: BuildJob) -> tuple[str, dict]:
    job.precision_onnx()
    return "model.onnx", {}


def tool_versions() -> dict:
    return {}


def effective_precision(precision: str, hint: str | None, info: dict | None = None) -> dict:
    if precision == "int8":
        return {"trunk_matmuls": "int8 (Q/DQ, symmetric, per-channel weights)",
                "resnet_guide_branch": "fp32", "rest_of_head": "fp32", "other_ops": "fp32"}
    if precision == "fp16":
        return {"all": "fp16 (LayerNorm/Softmax reductions fp32, I/O fp32)"}
    return {"all": precision}
