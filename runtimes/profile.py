"""Where an engine's time goes: per-op timings summarised by op type (torch-free).

OpenVINO reports PERF_COUNT per inference (the last one), so it is read after each call and summed;
ONNX Runtime's profiler records every call since the session started and is read once at the end."""
from __future__ import annotations

from collections import defaultdict
from typing import TypedDict

import numpy as np

from . import make_runner
from .manifest import Manifest


class OpRow(TypedDict):
    """One op type's time: the median call's milliseconds, the fastest call's, its share of the total."""
    op_type: str
    ms: float
    min_ms: float
    share: float
    ops_per_call: float
    kernels: list[str]  # the first few kernels that ran it


class OpProfile(TypedDict):
    engine: str
    backend: str
    precision: str
    batch: int
    iterations: int
    statistic: str
    op_total_ms: float
    ops: list[OpRow]  # slowest first


def op_profile(manifest: Manifest, batch: int = 1, iterations: int = 20, warmup: int = 3,
               threads: int | None = None) -> OpProfile:
    """Per op type: the median over calls of its milliseconds per call (one disturbed call on a shared
    host moves a mean, not a median), the fastest call's, its share, and the kernels that ran it."""
    size = manifest.preprocess.size
    feed = {manifest.input_name: np.random.default_rng(batch).uniform(-1, 1, (batch, 1, size, size)).astype(np.float32)}
    runner = make_runner(manifest, threads=threads, profile=True)
    calls: list[list[tuple[str, float, str]]] = []
    with runner:
        for _ in range(warmup):
            runner.infer(feed)
        for _ in range(iterations):
            runner.infer(feed)
            if runner.op_times_per_call:
                calls.append(runner.op_times())
        if not calls:  # chronological events of every call, the same nodes each call
            times = runner.op_times()
            per = len(times) // (warmup + iterations) or len(times)
            calls = [times[i:i + per] for i in range(len(times) - per * iterations, len(times), per)]
    per_call: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(calls))
    counts: dict[str, int] = defaultdict(int)
    kernels: dict[str, set[str]] = defaultdict(set)
    for i, call in enumerate(calls):
        for op, ms, kernel in call:
            per_call[op][i] += ms
            counts[op] += 1
            if kernel:
                kernels[op].add(kernel)
    medians = {op: float(np.median(v)) for op, v in per_call.items()}
    total = sum(medians.values()) or 1.0
    ops: list[OpRow] = [{"op_type": op, "ms": medians[op], "min_ms": min(per_call[op]),
                         "share": medians[op] / total, "ops_per_call": round(counts[op] / len(calls), 2),
                         "kernels": sorted(kernels[op])[:4]}
                        for op in sorted(per_call, key=lambda op: -medians[op])]
    return {"engine": str(manifest.dir), "backend": manifest.backend, "precision": manifest.precision,
            "batch": batch, "iterations": len(calls), "statistic": "median per call", "op_total_ms": total,
            "ops": ops}
