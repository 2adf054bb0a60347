"""The monitor as the node runs it: after each batch, each result's observation is kept in the ledger, the last
``--monitor-window`` instances are compared (:mod:`.watch`), and an alert starts when a comparison falls under its
threshold and ends when it is clearly back (:data:`.watch.ALPHA_END`). Each start and end is one log line
(``monitor-alert`` / ``monitor-clear``), one audit record and a change of ``dcube_monitor_alert{check}`` in
``/metrics``; ``/readyz`` does not look at them (an alert asks an operator to look, it does not stop the node)."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...predictions import Prediction
from .. import shadow
from ..records import Instance
from . import labels, performance, store, watch
from .observation import Observation, metadata, observe

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger("dcube_edge.serve")
EVERY_S = 1.0  # the batcher's comparisons at most this often (one takes some tens of ms)
LABELLED_WINDOWS = 4  # the performance window: the newest labelled results, this many monitor windows' worth


def performance_finding(ledger, engine: str, reference, newest: int) -> watch.Finding | None:
    """The performance comparison as a finding: the class whose site figures are most clearly worse than the
    card's (None: no labels yet)."""
    labelled = labels.joined(ledger, engine, newest)
    if not labelled:
        return None
    per = performance.evaluate(labelled, reference)
    worst = min(per, key=lambda c: c.p_worse)
    p = min(1.0, worst.p_worse * len(per))  # Bonferroni over the classes, as within each (sensitivity, specificity)
    site, card = worst.site, worst.card
    said = ", ".join(f"{k} {site[k].value} (card {card[k].value if k in card else '-'})"
                     for k in ("sensitivity", "specificity")) if site else "no figures"
    return watch.Finding("performance", f"last {len(labelled)} labelled", p, performance.PERF_ALPHA,
                         "fisher", worst.p_worse, len(labelled), f"{worst.name}: {said}")


class Monitor:
    """The node's monitor: observations in, alerts out."""

    def __init__(self, node: Node):
        from prometheus_client import Gauge

        self.node, self.lock, self.last, self.stale = node, threading.Lock(), 0.0, False
        self.reference = node.clf.manifest.record.reference
        store.prepare(node.ledger)
        node.paused_by_disk(self.keep)  # written only when changed: a node starts on a full disk and says so
        self.active = {a.name: a for a in store.alerts(node.ledger, active_only=True)}
        registry = node.metrics.registry
        self.alert_gauge = Gauge("dcube_monitor_alert", "1 while the monitor's alert on this check is active",
                                 ["check"], registry=registry)
        self.p_gauge = Gauge("dcube_monitor_p_value", "The p-value of the latest comparison of the rolling window "
                             "(alert under dcube_monitor_threshold)", ["check"], registry=registry)
        self.threshold_gauge = Gauge("dcube_monitor_threshold", "The p-value under which an alert starts", ["check"],
                                     registry=registry)
        self.agreement_gauge = Gauge("dcube_shadow_agreement", "Share of the rolling window's instances the shadow "
                                     "engine called as the active one did", registry=registry)
        self.ood_gauge = Gauge("dcube_monitor_ood_median", "Median out-of-distribution score of the rolling window",
                               registry=registry)
        for name in (*watch.CHECKS, "performance"):
            self.alert_gauge.labels(name).set(1 if name in self.active else 0)
            self.threshold_gauge.labels(name).set(performance.PERF_ALPHA if name == "performance" else watch.ALPHA)
        node.clf.observe = True
        if self.reference is None:
            log.warning("the engine records no reference (exported before monitoring): only the metadata mix is "
                        "monitored; re-export it to monitor its decisions and inputs", extra={"event": "no-reference"})

    def keep(self) -> None:
        """The reference and the settings the spool's observations are compared by (``monitor SPOOL`` reads them)."""
        store.keep_reference(self.node.ledger, self.reference)
        self.node.ledger.meta("monitor", json.dumps({"window": self.node.opts.monitor_window,
                                                     "baseline": self.node.opts.monitor_baseline}))

    def record(self, rows: Sequence[Instance], preds: Sequence[Prediction]) -> None:
        """Keep what each instance of a batch showed, on its row before its result is written (so the result's
        JSON and SR find it); a result that is then not written (a correction arrived) is observed again."""
        observed = [(row.uid, o) for row, pred in zip(rows, preds)
                    if (o := observe(pred, self.reference, metadata(row.path))) is not None]
        if observed:
            store.record(self.node.ledger, observed)

    def window(self) -> tuple[list[Observation], list[Observation], list[Observation]]:
        """(the last window, the site baseline, the window's instances after the baseline)."""
        ledger, engine, opts = self.node.ledger, self.node.engine_hash, self.node.opts
        window = store.observations(ledger, engine, newest=opts.monitor_window)
        baseline = store.observations(ledger, engine, oldest=opts.monitor_baseline)
        full = len(baseline) == opts.monitor_baseline
        after = [o for t, o in window if full and t > baseline[-1][0]]
        return [o for _, o in window], [o for _, o in baseline] if full else [], after

    def evaluate(self, force: bool = False) -> list[watch.Finding]:
        """Compare the window now (the batcher after a batch, at most once every :data:`EVERY_S` unless
        ``force``d: a label import); one evaluation at a time."""
        with self.lock:
            if not force and time.monotonic() - self.last < EVERY_S:
                self.stale = True  # made up by catch_up when the batcher is idle
                return []
            self.last, self.stale = time.monotonic(), False
            return self._evaluate()

    def catch_up(self) -> None:
        """The comparison a busy second skipped, once the batcher has nothing to do."""
        if self.stale:
            self.evaluate(force=True)

    def _evaluate(self) -> list[watch.Finding]:
        window, baseline, after = self.window()
        label = f"last {self.node.opts.monitor_window}"
        findings = watch.evaluate(window, self.reference, baseline, label, after)
        if (perf := performance_finding(self.node.ledger, self.node.engine_hash, self.reference,
                                        LABELLED_WINDOWS * self.node.opts.monitor_window)) is not None:
            findings.append(perf)
        held = self.node.engines
        if held is not None and held.shadow is not None:
            agreed = shadow.agreement(self.node.ledger, self.node.engine_hash, held.shadow.sha256,
                                      self.node.opts.monitor_window)
            if agreed["compared"]:
                self.agreement_gauge.set(agreed["agreement"])
        ood = watch.ood_summary(window, self.reference)
        if "median" in ood:
            self.ood_gauge.set(ood["median"])
        for f in findings:
            self.p_gauge.labels(f.name).set(f.statistic)
            if f.alarming and f.name not in self.active:
                self.start(f)
            elif f.name in self.active and f.n >= watch.MIN_WINDOW and f.statistic >= watch.ALPHA_END:
                self.end(f)
        return findings

    def engine_changed(self) -> None:
        """Another engine is active: its own reference, windows of its own results; the outgoing engine's alerts
        end (they were about its results)."""
        with self.lock:
            self.reference = self.node.clf.manifest.record.reference
            store.keep_reference(self.node.ledger, self.reference)
            self.node.clf.observe = True  # the incoming engine keeps its views' inputs as the first one did
            for name in list(self.active):
                self.close(name, f"monitor alert {name} ended: the engine it was about is no longer active (a new "
                                 "window starts with the incoming engine's results)")

    def start(self, f: watch.Finding) -> None:
        alert = store.Alert(f.name, f.window, time.time(), None, f.statistic, f.threshold, f.detail,
                            self.node.engine_hash)
        store.started(self.node.ledger, alert)
        self.active[f.name] = alert
        self.alert_gauge.labels(f.name).set(1)
        said = (f"monitor alert {f.name}: p = {f.statistic:.2g} under {f.threshold:.2g} over the {f.window} "
                f"({f.test} {f.value:.3g}; {f.detail})")
        log.warning("%s", said, extra={"event": "monitor-alert", "check": f.name})
        if self.node.audit is not None:
            self.node.audit.monitored(said, started=True)

    def end(self, f: watch.Finding) -> None:
        self.close(f.name, f"monitor alert {f.name} ended: p = {f.statistic:.2g} over the {f.window}")

    def close(self, name: str, said: str) -> None:
        """An alert ends, however: in the ledger, the gauge, one log line and one audit record."""
        store.ended(self.node.ledger, name)
        del self.active[name]
        self.alert_gauge.labels(name).set(0)
        log.info("%s", said, extra={"event": "monitor-clear", "check": name})
        if self.node.audit is not None:
            self.node.audit.monitored(said, started=False)
