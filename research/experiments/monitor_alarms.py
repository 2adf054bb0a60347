"""The node's monitor (runtimes/serve/monitor) on simulated streams: how often it raises an alert on a stream from
the engine's own distribution (false alarms), and how many instances it takes to raise one after the intensity
shifts or a new manufacturer's scanner joins (detection delay). Quoted in docs/monitoring.md; the simulation test
(tests/serve/test_monitor.py) runs one stream of each.

A stream is drawn, with replacement and a fixed seed, from a pool of observations: the engine's own results on
fresh phantoms of the distribution it was trained on (another seed of the same generator), the same phantoms with
their intensity shifted, and acquisition metadata drawn from a site's mix of two manufacturers (the new one, when
asked, on a share of the instances from a given point on).

    .venv/bin/python research/experiments/monitor_alarms.py ENGINE OUT.json [--streams 200 --length 5000]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dcube_edge import runtimes
from dcube_edge.runtimes.serve.monitor.observation import Observation, observe
from dcube_edge.runtimes.serve.monitor.replay import first_alarms

SITE = {"Manufacturer": (("Acme Medical", 0.7), ("Globex", 0.3))}  # the site's own mix (its baseline learns it)
MODELS = {"Acme Medical": "Sono 5", "Globex": "GX-200", "Initech": "Vista 9"}


def pool(engine: Path, paths: list[str]) -> list[Observation]:
    """The engine's observation of each file, without metadata (the stream adds it)."""
    with runtimes.load(engine) as clf:
        clf.observe = True
        reference = clf.manifest.record.reference
        found = [observe(p, reference, {}) for p in clf.classify(paths)]
    return [o for o in found if o is not None]


def shifted(paths: list[str], out: Path, offset: float) -> list[str]:
    """Copies of 8-bit grey pictures with ``offset`` (a fraction of full scale) added, clipped."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, path in enumerate(paths):
        a = np.asarray(Image.open(path).convert("L"), np.float64) + offset * 255
        target = out / f"{i:05d}.png"
        Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8)).save(target)
        written.append(str(target))
    return written


def site_meta(rng: np.random.Generator, n: int, new_from: int | None = None, new_share: float = 0.3) -> list[dict]:
    """Each instance's Manufacturer and model by the site's mix; from ``new_from`` on, ``new_share`` of them from a
    new manufacturer."""
    names, shares = zip(*SITE["Manufacturer"])
    out = []
    for i in range(n):
        maker = "Initech" if new_from is not None and i >= new_from and rng.random() < new_share else \
            str(rng.choice(names, p=shares))
        out.append({"Manufacturer": maker, "ManufacturerModelName": MODELS[maker]})
    return out


def stream(before: list[Observation], rng: np.random.Generator, n: int, after: list[Observation] | None = None,
           change: int | None = None, new_from: int | None = None) -> list[Observation]:
    """``n`` observations drawn from ``before`` (from ``change`` on, from ``after``), with the site's metadata."""
    meta = site_meta(rng, n, new_from)
    drawn = []
    for i in range(n):
        source = after if after is not None and change is not None and i >= change else before
        o = source[int(rng.integers(len(source)))]
        drawn.append(Observation(o.label, o.scores, o.inputs, o.ood, meta[i], o.form))
    return drawn


def main(argv: list[str] | None = None) -> None:
    from dcube_edge.phantoms import write_demo

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("engine", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--length", type=int, default=5000)
    ap.add_argument("--change", type=int, default=1000, help="where the shift or the new manufacturer starts")
    ap.add_argument("--offsets", default="0.05,0.1,0.2")
    ap.add_argument("--size", type=int, default=32, help="the phantoms' side (the engine was trained on)")
    ap.add_argument("--work", type=Path, default=Path("monitor-work"))
    ap.add_argument("--trust-only", action="store_true", help="only the label-free estimate's error")
    a = ap.parse_args(argv)
    if a.trust_only:
        write_demo(a.work / "fresh", per_class=100, size=a.size, seed=7)
        paths = sorted(str(p) for p in (a.work / "fresh").rglob("*.png"))
        found = label_free_trust(a.engine, paths, shifted(paths, a.work / "shift0.1", 0.1), 200)
        a.out.write_text(json.dumps(found, indent=1))
        json.dump(found, sys.stdout)
        return
    reference = runtimes.read(a.engine).record.reference
    write_demo(a.work / "fresh", per_class=100, size=a.size, seed=7)
    paths = sorted(str(p) for p in (a.work / "fresh").rglob("*.png"))
    own = pool(a.engine, paths)
    rows: dict = {"engine": str(a.engine), "pool": len(own), "streams": a.streams, "length": a.length,
                  "change": a.change, "machine": platform.processor() or platform.machine()}
    rng = np.random.default_rng(0)
    alarms = [first_alarms(stream(own, rng, a.length), reference) for _ in range(a.streams)]
    rows["false_alarms"] = {c: sum(f[c] is not None for f in alarms) for c in alarms[0]}
    rows["any_false_alarm"] = sum(any(v is not None for v in f.values()) for f in alarms)
    for offset in (float(x) for x in a.offsets.split(",")):
        moved = pool(a.engine, shifted(paths, a.work / f"shift{offset}", offset))
        delays = []
        for _ in range(a.streams // 4):
            found = first_alarms(stream(own, rng, a.change + 1000, moved, a.change), reference)
            hits = [v for v in found.values() if v is not None and v > a.change]
            delays.append(min(hits) - a.change if hits else None)
        rows[f"intensity+{offset}"] = summary(delays)
    delays = []
    for _ in range(a.streams // 4):
        found = first_alarms(stream(own, rng, a.change + 1000, new_from=a.change), reference)
        v = found["metadata-mix"]
        delays.append(v - a.change if v is not None and v > a.change else None)
    rows["new-manufacturer-30%"] = summary(delays)
    rows["label_free_trust"] = label_free_trust(a.engine, paths, shifted(paths, a.work / "shift0.1", 0.1), 200)
    a.out.write_text(json.dumps(rows, indent=1))
    json.dump(rows, sys.stdout)


def label_free_trust(engine: Path, paths: list[str], moved: list[str], windows: int, size: int = 250) -> dict:
    """How far the label-free estimate (runtimes/serve/monitor/performance.estimate) is from the figures the
    labels give, over ``windows`` windows of ``size`` instances drawn from the engine's own distribution and from
    the shifted one: the absolute error of each class's sensitivity and specificity, median and 95th percentile."""
    from dcube_edge.runtimes.serve.monitor.performance import counts, estimate, figures

    truth = [Path(p).parent.name for p in paths]
    rng, out = np.random.default_rng(1), {}
    for name, files in (("own", paths), ("shifted", moved)):
        own = pool(engine, files)
        errors: dict[str, list[float]] = {"sensitivity": [], "specificity": []}
        for _ in range(windows):
            pick = rng.integers(len(own), size=size)
            called, probs, truths = [own[i].label for i in pick], [own[i].scores for i in pick], [truth[i] for i in pick]
            for c in own[0].scores:
                real, est = figures(*counts(truths, called, c)), estimate(called, probs, c)
                for k in errors:
                    if real[k].value is not None and est[k].value is not None:
                        errors[k].append(abs(real[k].value - est[k].value))
        out[name] = {k: {"median_abs_error": round(float(np.median(v)), 3),
                         "p95_abs_error": round(float(np.quantile(v, 0.95)), 3)} for k, v in errors.items()}
    return out


def summary(delays: list[int | None]) -> dict:
    found = [d for d in delays if d is not None]
    return {"detected": f"{len(found)}/{len(delays)}", "median_delay": float(np.median(found)) if found else None,
            "max_delay": max(found) if found else None}


if __name__ == "__main__":
    main()
