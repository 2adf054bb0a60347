"""The precision registry: one :class:`Precision` per engine precision, the only place a precision is
described. ``export`` (which ONNX a builder starts from, the parity tolerance), ``bench`` (which GEMM peak a
row is measured against), the manifest reader and the CLI's help all read it here; each backend lists the
precisions it builds (:mod:`.backends`) and each builder decides how (``export/<backend>.py``).

Adding a precision: one ``register`` line below, then the builders that support it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dcube_edge.errors import UserError

from .sections import Parity


@dataclass(frozen=True)
class Tolerance:
    """What an engine must keep against FP32 torch on validation images.

    ``tie_margin`` (logits) is the precision's rounding scale: a top-1 flip between two classes that are
    within it of each other on both sides is a near-tie and does not count against ``min_top1_agreement``
    (see :func:`dcube_edge.export.parity.tie_flips`). For two classes a margin of m logits is a probability
    gap of tanh(m/2) ≈ m/2: 0.05 is 2.5 percentage points between the two."""

    min_top1_agreement: float = 0.99
    max_auc_drop: float = 0.005
    max_abs_logit_diff: float | None = None  # fp32 engines only: the same arithmetic, reordered
    tie_margin: float = 0.0

    def holds(self, parity: Parity) -> bool:
        # manifests written before near-ties were counted carry only the raw agreement
        agreement = parity.top1_agreement if parity.top1_agreement_beyond_ties is None else parity.top1_agreement_beyond_ties
        ok = agreement >= self.min_top1_agreement
        if parity.auc_delta is not None and np.isfinite(parity.auc_delta):
            ok = ok and parity.auc_delta >= -self.max_auc_drop
        if self.max_abs_logit_diff is not None:
            ok = ok and parity.max_abs_logit_diff <= self.max_abs_logit_diff
        return bool(ok)

    def limits(self) -> dict[str, float]:
        """The bounds as the parity record states them (those set)."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class Precision:
    name: str
    help: str  # where it runs, for --help and the README
    tolerance: Tolerance
    onnx: str  # the ONNX its engines are built from: "fp32" (the float graph), "fp16" (mixed), "int8" (Q/DQ)
    peak: str  # the GEMM peak a bench row of this precision is measured against: "fp32", "bf16" or "int8"


REGISTRY: dict[str, Precision] = {}


def register(precision: Precision) -> Precision:
    if precision.name in REGISTRY:
        raise ValueError(f"precision {precision.name!r} is registered twice")
    REGISTRY[precision.name] = precision
    return precision


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Precision:
    """The precision called ``name``, or a UserError naming the choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown precision {name!r}; choose one of {', '.join(REGISTRY)}") from None


def help_text() -> str:
    return " | ".join(f"{p.name} ({p.help})" for p in REGISTRY.values())


# fp32 reorders the same arithmetic (logits within 1e-3, so a flip needs a margin under 2e-3); fp16 keeps 11
# significand bits, bf16 8, int8 activations 7 plus a scale: the tie margins grow with the rounding.
register(Precision("fp32", "every backend", Tolerance(max_abs_logit_diff=1e-3, tie_margin=2e-3), onnx="fp32", peak="fp32"))
register(Precision("fp16", "GPU; OpenVINO on AMX-FP16 CPUs", Tolerance(tie_margin=0.02), onnx="fp16", peak="fp32"))
register(Precision("bf16", "OpenVINO and torch on bf16 CPUs", Tolerance(tie_margin=0.05), onnx="fp32", peak="bf16"))
register(Precision("int8", "every backend; calibrated", Tolerance(tie_margin=0.05), onnx="int8", peak="int8"))
