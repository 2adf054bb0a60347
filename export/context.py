"""What an export takes from the machine and the registries, handed in instead of reached for: the CPU's flags (which
precisions it can build, the OpenVINO hint), the timer of the OpenVINO export's measured choices, the precision
registry (each precision's parity tolerance), the FP32 PyTorch reference and the log. A test builds the situation it
needs (an AVX512-BF16 EPYC's flags, bf16 timed slower than f32, a tolerance no engine meets, a counted reference) as
an :class:`ExportContext` instead of patching module globals. Torch-free: the defaults import what they run when
they run."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.errors import UserError
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.precisions import REGISTRY, Precision

if TYPE_CHECKING:
    import torch

Log = Callable[[str], None]
# label → (IR file, inference-precision hint) in, label → batch-1 milliseconds out (export/ir_timing.py)
LatencyProbe = Callable[[Mapping[str, tuple[Path, str]], int], dict[str, float]]
Reference = Callable[["torch.nn.Module", np.ndarray], np.ndarray]  # the FP32 model's logits for images


def ir_latency(configs: Mapping[str, tuple[Path, str]], image_size: int) -> dict[str, float]:
    """OpenVINO's IRs timed on this CPU as the runner compiles them (:func:`.ir_timing.latency`)."""
    from .ir_timing import latency

    return latency(configs, image_size)


def torch_reference(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """The FP32 PyTorch model's logits, batched (:func:`dcube_edge.loop.predict_logits`)."""
    from dcube_edge.loop import predict_logits

    return predict_logits(model, images)


def _registry() -> Mapping[str, Precision]:
    return REGISTRY


@dataclass(frozen=True)
class ExportContext:
    flags: frozenset[str] = field(default_factory=isa.cpu_flags)
    latency: LatencyProbe = ir_latency
    precisions: Mapping[str, Precision] = field(default_factory=_registry)
    reference: Reference = torch_reference
    log: Log = print

    def precision(self, name: str) -> Precision:
        """The precision called ``name`` in this context's registry, or a UserError naming the choices."""
        try:
            return self.precisions[name]
        except KeyError:
            raise UserError(f"unknown precision {name!r}; choose one of {', '.join(self.precisions)}") from None
