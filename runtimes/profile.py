"""Where an engine's time goes: per-op timings summarised by op type (torch-free).

OpenVINO reports PERF_COUNT per inference (the last one), so it is read after each call and summed;
ONNX Runtime's profiler records every call since the session started and is read once at the end."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import make_runner
from .manifest import Manifest


def op_profile(manifest: Manifest, batch: int = 1, iterations: int = 20, warmup: int = 3,
               threads: int | None = None) -> dict:
    """Mean milliseconds per call by op type, its share, and the kernels that ran it."""
    size = manifest.preprocess.size
    feed = {manifest.input_name: np.random.default_rng(batch).uniform(-1, 1, (batch, 1, size, size)).astype(np.float32)}
    runner = make_runner(manifest, threads=threads, profile=True)
    per_call = manifest.backend == "openvino"
    times: list[tuple[str, float, str]] = []
    with runner:
        for _ in range(warmup):
            runner.infer(feed)
        for _ in range(iterations):
            runner.infer(feed)
            if per_call:
                times += runner.op_times()
        if not per_call:  # chronological events of every call: drop the warm-up calls' share
            times = runner.op_times()
            times = times[len(times) * warmup // (warmup + iterations):]
    by_type: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "count": 0, "kernels": set()})
    for op, ms, kernel in times:
        row = by_type[op]
        row["ms"] += ms / iterations
        row["count"] += 1
        if kernel:
            row["kernels"].add(kernel)
    total = sum(r["ms"] for r in by_type.values()) or 1.0
    ops = sorted(({"op_type": op, "ms": r["ms"], "share": r["ms"] / total, "ops_per_call": round(r["count"] / iterations, 2),
                   "kernels": sorted(r["kernels"])[:4]} for op, r in by_type.items()), key=lambda r: -r["ms"])
    return {"engine": str(manifest.dir), "backend": manifest.backend, "precision": manifest.precision,
            "batch": batch, "iterations": iterations, "op_total_ms": total, "ops": ops}
