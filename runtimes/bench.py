"""Latency measurement shared by every backend and the torch baseline (torch-free)."""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import numpy as np


def time_fn(fn: Callable[[], object], iterations: int = 30, warmup: int = 5) -> dict:
    """Call ``fn`` ``warmup`` times unmeasured, then ``iterations`` times; latency percentiles in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"iterations": iterations, "warmup": warmup, "mean_ms": float(ms.mean()),
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99))}


def peak_rss_mb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if platform.system() == "Linux" else kb / 2**20


def machine_info() -> dict:
    """CPU model, cores, the ISA flags that matter for int8/fp16 inference, GPU if any."""
    from . import isa

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "cpu_model": isa.cpu_model(), "isa": isa.notable(), "isa_cap": isa.isa_cap(), "gpu": None}
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            info["gpu"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return info
