"""The batcher: one thread classifying pending instances from every association and request in batches of
up to ``max_batch``, waiting at most ``max_delay_ms`` for a batch to fill; each result's SR is built here, once,
and recorded with the result (:mod:`.reports`). A full disk pauses it (nothing is lost: the rows stay pending)
instead of stopping the node."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .records import Instance

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")


class Batcher:
    def __init__(self, node: Node):
        self.node = node

    def run(self) -> None:
        """Pending instances (including those a previous run acknowledged but never classified) in batches."""
        node = self.node
        while not node.stopping.is_set():
            rows = node.ledger.pending(node.opts.max_batch)
            if len(rows) < node.opts.max_batch:
                with node.arrived:
                    node.arrived.wait(node.opts.max_delay_ms / 1000 if rows else 0.5)
                rows = node.ledger.pending(node.opts.max_batch)
            if rows and not node.paused_by_disk(lambda rows=rows: self.classify_rows(rows)):
                node.stopping.wait(5)
            node.metrics.queue.set(node.ledger.counts().get("pending", 0))

    def classify_rows(self, rows: list[Instance]) -> None:
        node = self.node
        with node.engine_lock:
            preds = list(node.clf.classify([r.path for r in rows], batch_size=len(rows), workers=node.opts.workers))
        node.metrics.batches.observe(len(rows))
        results = []
        for row, pred in zip(rows, preds):
            result = {"label": pred.label, "probs": pred.probs or None, "error": pred.error, "decision": None}
            report = None
            if not pred.error:
                result["decision"] = node.clf.decision.explain(pred.probs)
                try:
                    report = node.reports.build(row, result)
                except (ValueError, TypeError, AttributeError, KeyError) as e:  # a header highdicom cannot take
                    result["error"] = f"no result SR could be made from this instance: {type(e).__name__}: {e}"
            results.append((row, result, report))
        now = time.time()
        written = set(node.ledger.finish(results, node.engine_hash, now, node.destinations))
        node.metrics.classified.inc(len(written))
        for row, result, report in results:
            if row.uid not in written:
                continue
            node.metrics.latency.observe(max(0.0, now - row.received))
            if result["error"]:
                log.warning("not classified: %s", result["error"], extra={"event": "classify-failed", "uid": row.uid})
                continue
            if report.predecessor:
                log.info("corrected result SR %s supersedes %s", report.uid, report.predecessor,
                         extra={"event": "sr-corrected", "uid": row.uid})
            if node.audit is not None:
                node.audit.produced(report.study, row.uid, node.engine_hash, result["label"])
        log.info("classified a batch of %d", len(rows), extra={"event": "batch"})
