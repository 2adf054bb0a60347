"""The situations export tests build instead of patching module globals: the flag sets of the CPU classes the
project meets (one definition each), timings given to the OpenVINO export's measured choices, a tolerance no engine
meets, and a PyTorch reference that counts its runs. Each is handed to an export through its ExportContext."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from dcube_edge.export.context import ExportContext, LatencyProbe, torch_reference
from dcube_edge.runtimes import precisions

# /proc/cpuinfo flags as runtimes/isa.py reads them (only those it knows; a real CPU lists many more).
OLD = frozenset({"avx2", "fma"})  # AVX2 only: no bf16, no VNNI
VNNI_XEON = OLD | {"avx512f", "avx512_vnni"}  # AVX-512 with VNNI, no bf16 (a 2.5 GHz Xeon seen here)
EPYC = VNNI_XEON | {"avx512_bf16"}  # AMD EPYC (Zen 4): AVX512-BF16 and VNNI, no AMX, no AVX512-FP16
AMX_XEON = EPYC | {"avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"}  # Sapphire Rapids and later


def timings(ms: Mapping[str, float]) -> LatencyProbe:
    """A latency probe that answers every label of a measured choice with the given milliseconds (the IRs, their
    compilation under the hint and parity stay real; only which is faster is decided by the test)."""
    return lambda configs, image_size: {label: ms[label] for label in configs}


def unmeetable(precision: str) -> dict[str, precisions.Precision]:
    """The precision registry with ``precision``'s tolerance raised past what any engine meets, so every parity
    fallback is taken."""
    strict = dataclasses.replace(precisions.get(precision), tolerance=precisions.Tolerance(min_top1_agreement=1.01))
    return {**precisions.REGISTRY, precision: strict}


class CountedReference:
    """The real FP32 PyTorch reference, counting its runs (and the images of each)."""

    def __init__(self) -> None:
        self.runs: list[int] = []

    def __call__(self, model, images):
        self.runs.append(len(images))
        return torch_reference(model, images)


def context(**given) -> ExportContext:
    """An ExportContext with the given seams and a quiet log."""
    return ExportContext(**{"log": lambda *_: None, **given})
