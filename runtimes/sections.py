"""The typed sections of an engine record (:mod:`.record`) and the one codec between them and JSON.

Each section is a frozen dataclass whose field names are the manifest's keys, so :func:`encode` and :func:`decode`
need no per-section code: a field left ``None`` is not written, a field a manifest lacks takes its default (how
engines exported before that field existed load), a key this dcube-edge does not know is ignored. Torch-free."""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

JSONObject = dict[str, Any]  # a record kept as written (tool versions, a builder's notes on its recipe)
T = TypeVar("T")


def encode(value: object) -> Any:
    """A section (or anything inside one) as JSON values; ``None`` fields of a dataclass are left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                out[f.name] = encode(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(cls: type[T], data: object) -> T:
    """A section from what :func:`encode` wrote (or an older manifest's subset of it)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    given = {f.name: _value(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
             if f.init and f.name in data}
    return cls(**given)


def _value(kind: Any, value: object) -> Any:
    """``value`` read as the annotation ``kind`` (a dataclass, X | None, tuple[X, ...], dict[str, X], a scalar)."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in get_args(kind) if a is not type(None)]
        return _value(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(kind):
        return decode(typing.cast(type, kind), value)
    if origin is tuple:
        return tuple(_value(get_args(kind)[0], v) for v in typing.cast("list[object]", value))
    if origin is dict:
        return {str(k): _value(get_args(kind)[1], v) for k, v in typing.cast("dict[str, object]", value).items()}
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# -- the graph's outputs and what they mean ------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassCode:
    """What a class name stands for in a standard terminology (``export --class-codes``; PS3.16 coded concepts)."""

    scheme: str
    value: str
    meaning: str


@dataclass(frozen=True)
class InputSection:
    """What the engine expects to be given beyond the tensor: the DICOM Modality values it was trained on."""

    modalities: tuple[str, ...] = ()


# -- precision -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CalibrationSet:
    """The int8 calibration images, as their .npz file (``calibration_set``)."""

    file: str
    sha256: str
    size: int
    class_counts: tuple[int, ...] = ()


@dataclass(frozen=True)
class FP16Recipe:
    """How a mixed-precision fp16 ONNX was made (manifest key ``fp16``)."""

    tool: str
    kept_fp32: tuple[str, ...] = ()
    io: str = "float32"


@dataclass(frozen=True)
class QDQRecipe:
    """How an int8 Q/DQ ONNX was made (manifest key ``int8``)."""

    tool: str
    format: str = "QDQ"
    weights: str = ""
    activations: str = ""
    calibration_method: str = ""
    op_types: tuple[str, ...] = ()
    kept_float_scopes: tuple[str, ...] = ()
    kept_float_nodes: int = 0


# -- what parity measured --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parity:
    """The engine against the FP32 PyTorch model on the same images (export/parity.py measures it). The figures
    with labels are None where the parity images had none."""

    data: str = ""
    n: int = 0
    top1_agreement: float = 0.0
    tie_margin: float = 0.0
    near_tie_flips: int = 0
    top1_agreement_beyond_ties: float | None = None  # None: a manifest from before near-ties were counted
    logit_cosine_mean: float = 0.0
    logit_cosine_min: float = 0.0
    max_abs_logit_diff: float = 0.0
    accuracy_reference: float | None = None
    accuracy_engine: float | None = None
    auc_reference: float | None = None
    auc_engine: float | None = None
    accuracy_delta: float | None = None
    auc_delta: float | None = None
    runtime_inference_precision: str | None = None  # what the runtime compiled to, where it says (OpenVINO)
    tolerance: dict[str, float] | None = None
    within_tolerance: bool | None = None


# -- the decision ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OperatingPoint:
    """How the engine decides (manifest key ``decision``; chosen by dcube_edge/operating_point.py)."""

    rule: str = "argmax"
    chosen_on: str | None = None
    n: int | None = None
    class_counts: dict[str, int] | None = None
    positive_class: str | None = None
    threshold: float | None = None  # on the calibrated probability of the positive class
    bias: tuple[float, ...] | None = None  # added to calibrated log-probabilities (the balanced rule)
    note: str | None = None
    images_sha256: str | None = None  # the labelled images it was chosen on (evaluate warns on the same ones)


@dataclass(frozen=True)
class Calibration:
    """The probability calibration chosen with the operating point (manifest key ``calibration``): temperature
    scaling and what it did to the calibration error, Brier score and NLL on the images it was fitted on."""

    temperature: float = 1.0
    method: str = "temperature scaling (negative log-likelihood)"
    temperature_before: float = 1.0
    ece_before: float | None = None
    ece_after: float | None = None
    brier_before: float | None = None
    brier_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    chosen_on: str | None = None
    n: int | None = None


# -- what the engine saw ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """What the engine saw on its operating split, for the DICOM node's monitor to compare a site's stream with
    (manifest key ``reference``; export/reference.py records it, runtimes/serve/monitor reads it). Every sample is
    kept sorted, at most 512 values (evenly spaced quantiles of a larger one; ``n`` and ``instances`` are the true
    counts). Per instance (its views combined by the instance policy): the calibrated probability of each class
    (``scores``), the share called each class at the operating point (``decision_rates``) and, per class, the
    counts (true positives, false negatives, false positives, true negatives) at that point (``confusion``). Per
    view: the input statistics of runtimes/observed.py (``inputs``, by feature), the shares read from colour,
    multi-frame and tissue-region files, and the out-of-distribution score's parameters (``ood_method``: a
    Mahalanobis distance of ``ood_features`` from ``ood_mean`` under the precision matrix ``ood_precision``) with
    the reference's own scores (``ood``)."""

    chosen_on: str | None = None
    n: int = 0  # views
    instances: int = 0
    scores: dict[str, tuple[float, ...]] = field(default_factory=dict)
    decision_rates: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inputs: dict[str, tuple[float, ...]] = field(default_factory=dict)
    colour: float = 0.0
    multiframe: float = 0.0
    regions: float = 0.0
    ood_method: str = "mahalanobis"
    ood_features: tuple[str, ...] = ()
    ood_mean: tuple[float, ...] = ()
    ood_precision: tuple[tuple[float, ...], ...] = ()
    ood: tuple[float, ...] = ()


# -- where it came from ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuiltOn:
    """The CPU an engine was exported (and its measured choices timed) on."""

    cpu_model: str = "unknown"
    isa_class: str | None = None
    isa: tuple[str, ...] = ()
    isa_cap: str | None = None


@dataclass(frozen=True)
class RunRef:
    """The run an engine was exported from: its path then, and the sha256 of its config and weights by file name."""

    path: str
    hashes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    intended_use: str = ""
    training_data: JSONObject | None = None  # dcube_edge.data.record: where, how many per class, fingerprint
    run: RunRef | None = None
    tools: dict[str, str] = field(default_factory=dict)
    built_on: BuiltOn | None = None
    created: str | None = None
