"""``dcube-edge monitor SPOOL``: the monitor's windows and alerts read from the spool's ledger (safe while the node
runs: SQLite WAL), as a dict (``--json``) and as plots of the reference against now (``--plot``)."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcube_edge.errors import Unavailable

from ...observed import FEATURES
from ...sections import Reference
from ..ledger import Ledger
from ..records import iso
from . import labels, performance, store, watch
from .alerts import LABELLED_WINDOWS
from .observation import Observation

DAYS = 7  # daily windows shown


@dataclass
class Seen:
    """What the report is made of: the reference, the last window and the baseline."""

    reference: Reference | None
    window: list[Observation]
    baseline: list[Observation]
    after: list[Observation]
    settings: dict


def settings_of(ledger: Ledger) -> dict:
    from ..options import ServeOptions

    kept = json.loads(ledger.meta("monitor") or "{}")
    defaults = ServeOptions()
    return {"window": kept.get("window", defaults.monitor_window),
            "baseline": kept.get("baseline", defaults.monitor_baseline)}


def gather(ledger: Ledger) -> Seen:
    engine = ledger.meta("engine_sha256") or ""
    s = settings_of(ledger)
    window = store.observations(ledger, engine, newest=s["window"])
    baseline = store.observations(ledger, engine, oldest=s["baseline"])
    full = len(baseline) == s["baseline"]
    after = [o for t, o in window if full and t > baseline[-1][0]]
    return Seen(store.reference_of(ledger), [o for _, o in window], [o for _, o in baseline] if full else [], after,
                s)


def status(ledger: Ledger, now: float | None = None) -> dict:
    """The windows (the last N instances, and each of the last days), their comparisons, and the alerts."""
    seen = gather(ledger)
    engine = ledger.meta("engine_sha256") or ""
    label = f"last {seen.settings['window']}"
    windows = [{"window": label, "instances": len(seen.window), "ood": watch.ood_summary(seen.window, seen.reference),
                "findings": [f.to_dict() for f in watch.evaluate(seen.window, seen.reference, seen.baseline, label,
                                                                 seen.after)]}]
    today = dt.datetime.fromtimestamp(now or dt.datetime.now(dt.timezone.utc).timestamp(), dt.timezone.utc).date()
    first = dt.datetime.combine(today - dt.timedelta(days=DAYS - 1), dt.time(), dt.timezone.utc).timestamp()
    week = store.observations(ledger, engine, since=first)  # read once, split by day
    for back in range(DAYS):
        day = today - dt.timedelta(days=back)
        start = dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp()
        rows = [o for t, o in week if start <= t < start + 86400]
        if rows:
            windows.append({"window": day.isoformat(), "instances": len(rows),
                            "ood": watch.ood_summary(rows, seen.reference),
                            "findings": [f.to_dict() for f in watch.evaluate(rows, seen.reference, seen.baseline,
                                                                             day.isoformat())]})
    every = store.alerts(ledger)
    labelled = labels.joined(ledger, engine, LABELLED_WINDOWS * seen.settings["window"])
    recent = [(o.label, o.scores) for o in seen.window]
    perf = [c.to_dict() for c in performance.evaluate(labelled, seen.reference, recent)] if labelled or recent else []
    return {"engines": engines_state(ledger, engine, seen.settings["window"]),
            "performance": {"labelled": len(labelled), "threshold": performance.PERF_ALPHA,
                            "estimated_on": f"last {len(recent)} instances", "classes": perf},
            "engine_sha256": engine, "reference": describe(seen.reference), "settings": seen.settings,
            "baseline_instances": len(seen.baseline),
            "alerts": [alert_dict(a) for a in every if a.ended is None],
            "history": [alert_dict(a) for a in every if a.ended is not None], "windows": windows}


def describe(reference: Reference | None) -> dict | None:
    if reference is None:
        return None
    return {"chosen_on": reference.chosen_on, "instances": reference.instances, "views": reference.n,
            "decision_rates": reference.decision_rates}


def alert_dict(a: store.Alert) -> dict:
    return {"name": a.name, "since": iso(a.since), "ended": iso(a.ended), "statistic": a.statistic,
            "threshold": a.threshold, "window": a.window, "detail": a.detail, "engine_sha256": a.engine}


def plot(ledger: Ledger, out: Path) -> list[Path]:
    """Per class, the reference's calibrated scores against the last window's, and per input statistic the same
    (empirical CDFs): one PNG each, written atomically. The files written."""
    seen = gather(ledger)
    if seen.reference is None:
        return []
    try:
        import matplotlib
    except ImportError:
        raise Unavailable("monitor --plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    panels = [(f"score-{c}", f"calibrated p({c})", ref, [o.scores.get(c, 0.0) for o in seen.window])
              for c, ref in seen.reference.scores.items()]
    panels += [(f"input-{f}", f, seen.reference.inputs[f], [v for o in seen.window for v in o.feature(f)])
               for f in FEATURES if f in seen.reference.inputs]
    for name, what, ref, now in panels:
        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=110)
        for values, label in ((ref, f"reference ({seen.reference.instances} instances)"),
                              (now, f"last {len(seen.window)} instances")):
            if len(values):
                v = np.sort(np.asarray(values, float))
                ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=label)
        ax.set_xlabel(what)
        ax.set_ylabel("share of instances at or below")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = out / f"{name}.png"
        tmp = path.with_name(f".{path.name}.partial.png")
        fig.savefig(tmp)
        tmp.replace(path)
        plt.close(fig)
        written.append(path)
    return written


def engines_state(ledger: Ledger, engine: str, window: int) -> dict:
    """The history of engine switches and, where the node runs a shadow, how often it agrees with the active one."""
    from .. import engines, shadow

    history = engines.history(ledger)
    latest = history[-1]["shadow"] if history else None
    return {"active": engines.named(ledger, engine), "history": history,
            "shadow": {**(engines.named(ledger, latest) or {}), **shadow.agreement(ledger, engine, latest, window)}
            if latest else None}
