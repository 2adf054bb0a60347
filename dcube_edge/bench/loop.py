"""Throughput of a cine loop as a scanner sends it: a 120-frame 640x480 YBR_FULL_422 JPEG baseline US Multi-frame
object with a tissue region, classified frame by frame. Each stage is timed on its own in this process — decoding
(pydicom + pylibjpeg, YBR to RGB included), the colour rule and the tissue crop, the resize to the model's input,
the engine — then the whole ``classify`` call; frames/s per stage say which part dominates."""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dcube_edge import runtimes

Log = Callable[[str], None]


def write_loop(folder: Path, frames: int = 120, tissue: int = 360, seed: int = 0) -> Path:
    """The benchmark's object: a malignant phantom loop of ``frames`` in a ``tissue``-pixel region of a screen."""
    from dcube_edge.phantoms import loop
    from dcube_edge.scanner import layout, screen, write_us

    pictures = loop("malignant", tissue, frames, np.random.default_rng(seed))
    screens = [screen([p], t, seed) for t, p in enumerate(pictures)]
    return write_us(folder / "loop.dcm", screens, layout(tissue, 1), "jpeg")


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def loop_throughput(engine: Path, frames: int = 120, batch: int = 32, repeats: int = 3, threads: int | None = None,
                    log: Log = lambda _: None, tissue: int = 360) -> dict:
    """Frames/s of each stage and of ``classify`` end to end on one loop (median of ``repeats`` passes, each stage
    measured cumulatively: JPEG decoding alone; + pydicom's YBR to RGB; + colour and crop; + resize; the engine alone
    on the preprocessed frames). The host's load average is recorded beside them."""
    from pydicom.pixels import iter_pixels

    from dcube_edge.runtimes.preprocess import preprocess, source

    with tempfile.TemporaryDirectory(prefix="dcube-loop-") as tmp, runtimes.load(engine, threads=threads) as clf:
        log("writing the loop …")
        path = write_loop(Path(tmp), frames, tissue)
        spec = clf.spec
        inputs = np.stack([preprocess(g, spec) for _, g in source(path, spec).read()])
        batch = min(batch, clf.manifest.max_batch)
        clf.logits(inputs[:batch])  # warm-up
        stages = {
            "decode JPEG only (YBR kept)": lambda: sum(1 for _ in iter_pixels(str(path), raw=True)),
            "decode (pydicom, JPEG + YBR to RGB)": lambda: sum(1 for _ in iter_pixels(str(path))),
            "+ colour rule, tissue crop": lambda: sum(1 for _ in source(path, spec).read()),
            "+ resize to the model's input": lambda: [preprocess(g, spec) for _, g in source(path, spec).read()],
            f"engine alone (batch {batch})": lambda: clf.logits(inputs),
            f"classify, end to end (batch {batch})": lambda: list(clf.classify([path], batch_size=batch)),
        }
        seconds = {}
        for name, fn in stages.items():
            log(f"timing {name} …")
            seconds[name] = _median_s(fn, repeats)
    end_to_end = seconds[f"classify, end to end (batch {batch})"]
    reading = seconds["+ resize to the model's input"]
    engine_s = seconds[f"engine alone (batch {batch})"]
    rows = [{"stage": k, "seconds": round(v, 4), "frames_per_s": round(frames / v, 1), "ms_per_frame": round(1e3 * v / frames, 2)}
            for k, v in seconds.items()]
    return {"engine": str(engine), "backend": clf.manifest.backend, "precision": clf.manifest.precision,
            "input_size": spec.size, "frames": frames,
            "screen": f"640x480 YBR_FULL_422 JPEG baseline, one {tissue}x{tissue} tissue region",
            "repeats": repeats, "rows": rows,
            "dominant": "reading (decode, colour, crop, resize)" if reading > engine_s else "the engine",
            "reading_share": round(reading / (reading + engine_s), 3), "end_to_end_frames_per_s": round(frames / end_to_end, 1),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}
