"""An engine's runner against its vendor's own benchmark tool on the same model file, hint and batch
(OpenVINO: benchmark_app), in paired rounds (:func:`dcube_edge.runtimes.timing.rounds`)."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from dcube_edge import runtimes
from dcube_edge.errors import UserError
from dcube_edge.runtimes.timing import for_seconds, rounds

from .rows import inputs


def benchmark_app_figure(engine: Path, batch: int = 1, count: int = 6, seconds: int = 3,
                         threads: int | None = None) -> dict:
    """Our runner vs the backend's own benchmark tool on the same model file, precision hint and batch, in
    ``count`` paired rounds (:func:`~dcube_edge.runtimes.timing.rounds`: our runner for ``seconds``, then the
    tool for ``seconds``, the order swapped every round). The overhead is the median of the per-round ratios:
    on a shared host both sides drift by tens of percent within a minute, more than the gap being measured,
    and a ratio of back-to-back figures cancels that drift where a ratio of overall medians does not. Both
    compile the batch's static shape, as the runner does."""
    manifest = runtimes.read(engine)
    tool = runtimes.backends.get(manifest.backend).vendor_benchmark
    if tool is None:
        raise UserError(f"{engine} is a {manifest.backend} engine, which has no vendor benchmark tool to compare with")
    module, name = tool.split(":")
    theirs = getattr(importlib.import_module(module), name)
    runner = runtimes.make_runner(manifest, threads=threads)
    feed = {manifest.input_name: inputs(batch, manifest.preprocess.size)}
    with runner:
        for _ in range(5):  # warm: compile, caches, the first calls
            runner.infer(feed)
        got = rounds({"ours": for_seconds(lambda: runner.infer(feed), seconds),
                      "theirs": lambda: theirs(manifest, batch, seconds, threads)}, count)
        hint = runner.compiled_precision()
    ratios = [a / b for a, b in zip(got["ours"], got["theirs"])]
    return {"engine": str(engine), "precision": manifest.precision, "hint": hint,
            "batch": batch, "rounds": count, "tool": tool.split(":")[1],
            "p50_ms_dcube_edge": float(np.median(got["ours"])), "p50_ms_benchmark_app": float(np.median(got["theirs"])),
            "overhead": float(np.median(ratios)) - 1, "overhead_per_round": [round(x - 1, 4) for x in ratios]}


def vs_app_method(figure: dict) -> str:
    """How a benchmark_app comparison was taken: paired rounds (median ratio), or, in older
    files, the ratio of the two sides' overall medians."""
    if "overhead_per_round" in figure:
        return f"{figure['rounds']} paired rounds, median of the per-round ratios"
    return f"{figure['rounds']} alternated rounds, ratio of the medians"
