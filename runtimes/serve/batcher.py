"""The batcher: one thread classifying pending instances from every association and request in batches of
up to ``max_batch``, waiting at most ``max_delay_ms`` for a batch to fill."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .sr import sr_uids

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")


class Batcher:
    def __init__(self, node: Node):
        self.node = node

    def run(self) -> None:
        """Pending instances (including those a previous run acknowledged but never classified) in batches."""
        while not self.node.stopping.is_set():
            rows = self.node.ledger.pending(self.node.opts.max_batch)
            if len(rows) < self.node.opts.max_batch:
                with self.node.arrived:
                    self.node.arrived.wait(self.node.opts.max_delay_ms / 1000 if rows else 0.5)
                rows = self.node.ledger.pending(self.node.opts.max_batch)
            if rows:
                self.classify_rows(rows)
            self.node.metrics.queue.set(self.node.ledger.counts().get("pending", 0))

    def classify_rows(self, rows: list[tuple[str, str, float]]) -> None:
        node = self.node
        with node.engine_lock:
            preds = list(node.clf.classify([p for _, p, _ in rows], batch_size=len(rows), workers=node.opts.workers))
        self.node.metrics.batches.observe(len(rows))
        results = [(uid, p.label, p.probs, p.error) for (uid, _, _), p in zip(rows, preds)]
        self.audit(rows, preds)
        now = time.time()
        written = set(self.node.ledger.finish(results, self.node.engine_hash, now, self.node.destinations))
        self.node.metrics.classified.inc(len(written))
        for (uid, _, received), pred in zip(rows, preds):
            if uid not in written:
                continue
            self.node.metrics.latency.observe(max(0.0, now - received))
            if pred.error:
                log.warning("not classified: %s", pred.error, extra={"event": "classify-failed", "uid": uid})
        log.info("classified a batch of %d", len(rows), extra={"event": "batch"})

    def audit(self, rows: list[tuple[str, str, float]], preds: list) -> None:
        """"Result produced" for each result, written (and synced) before the results are committed: once a
        forwarder can see a result, its record is on disk, whenever the process is killed. A kill between the
        two leaves the rows pending; they are classified again at the next start and recorded again."""
        if self.node.audit is None:
            return
        for (uid, _, _), pred in zip(rows, preds):
            if not pred.error:
                study = (self.node.ledger.get(uid) or {}).get("study_instance_uid") or ""
                report = sr_uids(uid, self.node.engine_hash)[1]
                self.node.audit.produced(study, report, self.node.engine_hash, pred.label, source=uid)
