"""The reporter: one thread making the SR of every recorded result that has none (:mod:`.reports`), and
recording it with the queueing of its deliveries. A thread of its own so that making SRs (highdicom, some tens of
ms each) never holds up classification: receipt → result stays what the batcher makes it. A full disk pauses it."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .disk import is_disk_full
from .records import Instance
from .reports import Unavailable

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")
BATCH = 16  # SRs made between two looks at the ledger


class Reporter:
    def __init__(self, node: Node):
        self.node = node

    def run(self) -> None:
        """Make the SR of every result that has none, until the node stops."""
        node = self.node
        while not node.stopping.is_set():
            rows = node.ledger.awaiting_report(BATCH)
            if not rows:
                with node.classified:
                    node.classified.wait(0.5)
                continue
            if not node.paused_by_disk(lambda rows=rows: self.report(rows)):
                node.stopping.wait(5)

    def report(self, rows: list[Instance]) -> None:
        node = self.node
        for row in rows:
            if node.stopping.is_set():
                return
            try:
                report = node.reports.build(row) if row.layout else node.reports.earlier(row)
            except Exception as e:
                if is_disk_full(e):
                    raise
                reason = str(e) if isinstance(e, Unavailable) else (f"no result SR can be made from this instance "
                                                                     f"({type(e).__name__}: {e})")
                node.ledger.no_report(row.uid, reason, node.destinations)
                log.warning("%s", reason, extra={"event": "sr-failed", "uid": row.uid})
                continue
            if node.ledger.attach(report, row.revision, node.destinations) and report.predecessor:
                log.info("corrected result SR %s supersedes %s", report.uid, report.predecessor,
                         extra={"event": "sr-corrected", "uid": row.uid})
