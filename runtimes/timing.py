"""The one way dcube-edge times things (torch-free): ``bench`` rows, the export's timing checks, the
benchmark_app comparison and the experiment scripts all call :func:`rounds`.

A round calls every configuration once, the order rotating from round to round, so a change in the host's
speed (a shared 2-core machine drifts by tens of percent within a minute) never always favours the
configuration measured second. A configuration is a callable: it is timed around the call, or, where it
measures itself (an external tool that prints its own median), it returns its own figure in milliseconds.
:func:`relative` turns rounds into figures that cancel the drift: each round's ratio to the first
configuration, medianed. :func:`time_fn` is the one-configuration case, with percentiles."""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping

import numpy as np

Call = Callable[[], object]


def timed_ms(fn: Call) -> float:
    """Milliseconds of one call; a call that returns a float measured itself, and that figure counts."""
    start = time.perf_counter()
    got = fn()
    elapsed = (time.perf_counter() - start) * 1e3
    return float(got) if isinstance(got, float) else elapsed


def rounds(calls: Mapping[str, Call], count: int, warmup: int = 0) -> dict[str, list[float]]:
    """Milliseconds per call of every configuration over ``count`` rounds (after ``warmup`` untimed rounds),
    each round calling every configuration once, the order rotating by one each round."""
    labels = list(calls)
    for _ in range(warmup):
        for label in labels:
            calls[label]()
    samples: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(count):
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            samples[label].append(timed_ms(calls[label]))
    return samples


def relative(samples: Mapping[str, list[float]]) -> dict[str, float]:
    """Per configuration: the median over rounds of its time relative to the first configuration's in the same
    round, times the first configuration's median (ms). Another tenant slows neighbouring calls alike, so the
    per-round ratio cancels it where a ratio of overall medians does not."""
    labels = list(samples)
    ref = np.asarray(samples[labels[0]])
    return {label: float(np.median(np.asarray(v) / ref) * np.median(ref)) for label, v in samples.items()}


def time_fn(fn: Call, iterations: int = 30, warmup: int = 5) -> dict:
    """One configuration: ``warmup`` untimed calls, then ``iterations`` timed ones; latency percentiles in ms."""
    ms = np.asarray(rounds({"fn": fn}, iterations, warmup)["fn"])
    return {"iterations": iterations, "warmup": warmup, "mean_ms": float(ms.mean()),
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99))}


def for_seconds(fn: Call, seconds: float) -> Callable[[], float]:
    """A configuration that calls ``fn`` repeatedly for ``seconds`` and returns its median call (ms): a block
    of calls to pair against a tool that measures in blocks of seconds."""
    def block() -> float:
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds:
            times.append(timed_ms(fn))
        return float(np.median(times))

    return block


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
