"""The batcher: one thread classifying pending instances from every association and request in batches of
up to ``max_batch``, waiting at most ``max_delay_ms`` for a batch to fill; each result is recorded with its
decision explained, and the reporter (:mod:`.reports`) makes its SR. A full disk pauses it (nothing is lost: the
rows stay pending) instead of stopping the node."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import shadow
from .records import Instance, reading_of
from .sr import sr_uids

if TYPE_CHECKING:
    from .monitor.alerts import Monitor
    from .node import Node

log = logging.getLogger("dcube_edge.serve")


class Batcher:
    def __init__(self, node: Node):
        self.node = node

    def run(self) -> None:
        """Pending instances (including those a previous run acknowledged but never classified) in batches."""
        node = self.node
        while not node.stopping.is_set():
            if node.engines is not None:
                node.engines.between_batches()  # a promote or rollback asked for: between two batches
            rows = node.ledger.pending(node.opts.max_batch)
            if len(rows) < node.opts.max_batch:
                with node.arrived:
                    node.arrived.wait(node.opts.max_delay_ms / 1000 if rows else 0.5)
                rows = node.ledger.pending(node.opts.max_batch)
            if not rows:
                self.monitor(lambda m: m.catch_up())
            if rows and not node.paused_by_disk(lambda rows=rows: self.classify_rows(rows)):
                node.stopping.wait(5)
            node.metrics.queue.set(node.ledger.counts().get("pending", 0))

    def classify_rows(self, rows: list[Instance]) -> None:
        node = self.node
        with node.engine_lock:  # views (frames, tissue regions) of every instance share engine calls
            preds = list(node.clf.classify([r.path for r in rows], batch_size=node.opts.max_batch,
                                           workers=node.opts.workers))
        node.metrics.batches.observe(len(rows))
        results = []
        for row, pred in zip(rows, preds):
            explained = None if pred.error else node.clf.decision.explain(pred.probs)
            results.append((row, {"label": pred.label, "probs": pred.probs or None, "error": pred.error,
                                  "decision": explained, "views": reading_of(pred)}))
        self.audit(results)
        self.monitor(lambda m: m.record(rows, preds))  # on the pending rows: there before the result is seen
        now = time.time()
        written = set(node.ledger.finish(results, node.engine_hash, now))
        with node.classified:
            node.classified.notify()
        node.metrics.classified.inc(len(written))
        self.monitor(lambda m: m.evaluate())
        self.shadow([row for row in rows if row.uid in written])
        for row, result in results:
            if row.uid not in written:
                continue
            node.metrics.latency.observe(max(0.0, now - row.received))
            if result["error"]:
                log.warning("not classified: %s", result["error"], extra={"event": "classify-failed", "uid": row.uid})
        log.info("classified a batch of %d", len(rows), extra={"event": "batch"})

    def monitor(self, step: Callable[[Monitor], object]) -> None:
        """One step of the monitor's look at the batch; a fault in it is logged and never holds up classification."""
        if self.node.monitor is None:
            return
        try:
            step(self.node.monitor)
        except Exception as e:  # noqa: BLE001 — the results are written; the monitor must not stop the node
            log.error("the monitor failed on a batch (%s: %s)", type(e).__name__, e, exc_info=True,
                      extra={"event": "monitor-failed"})

    def shadow(self, rows: list[Instance]) -> None:
        """The shadow engine's results for what the active one just classified: recorded, never delivered; a fault
        in it is logged and never holds up the active engine."""
        engines = self.node.engines
        if engines is None or engines.shadow is None or not rows:
            return
        try:
            shadow.classify(self.node.ledger, engines.shadow, rows, self.node.opts.workers)
        except Exception as e:  # noqa: BLE001 — the active engine's results stand whatever the shadow does
            log.error("the shadow engine failed on a batch (%s: %s)", type(e).__name__, e,
                      extra={"event": "shadow-failed"})

    def audit(self, results: list[tuple[Instance, dict]]) -> None:
        """"Result produced" for each result, naming the SR it will be kept as, written (and synced) before the
        results are committed: once the reporter and the forwarders can see a result, its record is on disk,
        whenever the process is killed. A kill between the two leaves the rows pending; they are classified again
        at the next start and recorded again (never zero times)."""
        node = self.node
        if node.audit is None:
            return
        for row, result in results:
            if not result["error"]:
                report = sr_uids(row.uid, node.engine_hash, row.revision)[1]
                node.audit.produced(row.study or "", report, node.engine_hash, result["label"], source=row.uid)
