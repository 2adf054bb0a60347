"""OpenVINO IRs timed on this CPU as the runner compiles them (a static batch-1 shape, the latency hint): the real
latency probe behind the OpenVINO export's measured choices (:mod:`.openvino_checks`; a test gives its own
through :class:`.context.ExportContext`)."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dcube_edge.runtimes.timing import relative, rounds

__all__ = ["hint_latency", "latency"]


def latency(configs: Mapping[str, tuple[Path, str]], image_size: int, count: int = 25) -> dict[str, float]:
    """Batch-1 latency (ms) of each ``label: (IR, inference-precision hint)``, compiled at a static batch-1
    shape as the runner compiles it, by :func:`~dcube_edge.runtimes.timing.rounds` (one call each per round,
    order rotating) and :func:`~dcube_edge.runtimes.timing.relative` (per-round ratios to the first label)."""
    import openvino as ov
    import openvino.properties.hint as ov_hints

    core = ov.Core()

    def request(xml: Path, hint: str) -> Any:
        model = core.read_model(str(xml))
        model.reshape({i.get_any_name(): [1, *i.get_partial_shape()[1:]] for i in model.inputs})
        return core.compile_model(model, "CPU", {ov_hints.inference_precision(): hint,
                                                 ov_hints.performance_mode(): ov_hints.PerformanceMode.LATENCY}
                                  ).create_infer_request()

    feed = np.random.default_rng(0).uniform(-1, 1, (1, 1, image_size, image_size)).astype(np.float32)
    requests = {label: request(xml, hint) for label, (xml, hint) in configs.items()}
    calls = {label: functools.partial(r.infer, [feed]) for label, r in requests.items()}
    return relative(rounds(calls, count, warmup=1))


def hint_latency(xml: Path, image_size: int, hints: tuple[str, ...] = ("bf16", "f32"), count: int = 25) -> dict[str, float]:
    """Batch-1 latency (ms) of one IR compiled under each inference-precision hint (see :func:`latency`)."""
    return latency({h: (xml, h) for h in hints}, image_size, count)
