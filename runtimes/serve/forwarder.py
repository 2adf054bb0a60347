"""Results back to the clinic: each result's SR sent to the PACS by C-STORE, kept in the ledger and retried
with back-off until acknowledged."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .sr import structured_report

if TYPE_CHECKING:
    from .node import Node


class Forwarder:
    def __init__(self, node: Node):
        self.node = node

    def document(self, path: str, label: str, probs: str):
        """The SR of one classified instance (its ledger row's source path, label and probabilities)."""
        return structured_report(path, label, json.loads(probs), self.node.clf.manifest, self.node.engine_hash)

    def run(self) -> None:
        """Send each result's SR to the PACS; kept in the ledger and retried with back-off until acknowledged."""
        from pynetdicom import AE
        from pynetdicom.sop_class import ComprehensiveSRStorage

        title, host, port = self.node.opts.forward
        ae = AE(ae_title=self.node.opts.ae_title)
        ae.add_requested_context(ComprehensiveSRStorage)
        while not self.node.stopping.is_set():
            rows = self.node.ledger.to_forward()
            if not rows:
                self.node.stopping.wait(0.5)
                continue
            assoc = ae.associate(host, port, ae_title=title)
            if not assoc.is_established:
                for uid, *_ in rows:
                    self.node.ledger.forwarded(uid, f"association with {title}@{host}:{port} failed")
                continue
            try:
                for uid, path, label, probs in rows:
                    try:
                        status = assoc.send_c_store(self.document(path, label, probs))
                        ok = bool(status) and int(status.Status) == 0
                        self.node.ledger.forwarded(uid, None if ok else f"PACS status {getattr(status, 'Status', 'none')}")
                    except Exception as e:  # noqa: BLE001 — one bad instance must not stop the others
                        self.node.ledger.forwarded(uid, f"{type(e).__name__}: {e}")
            finally:
                assoc.release()
