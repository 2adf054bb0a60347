"""Results back to the clinic: each result's SR delivered to every configured destination — a PACS by C-STORE
(``--forward AE@HOST:PORT``), a DICOMweb server by STOW-RS (``--forward-stow URL``, through ``dicomweb-client``).
One thread per destination, each working through its own delivery rows in the ledger, so a destination that
is down or refuses never holds up another.

Failures are sorted: transient ones (association refused or aborted, a timeout, 0xA7xx out of resources, HTTP
408/429/5xx, a connection error) are retried with back-off; permanent ones (other failure statuses such as 0xA9xx
or 0xCxxx, HTTP 4xx, a document that cannot be built) and a transient one past ``max_attempts`` move the delivery
to ``dead`` with the reason (``dcube-edge spool status``, ``spool retry``)."""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from .sr import structured_report

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")


class Permanent(Exception):
    """A refusal that sending again will not change."""


def dicom_status_failure(status: int) -> Exception:
    """A C-STORE failure status as the exception kind that says whether to try again (PS3.4 B.2.3)."""
    message = f"destination answered status 0x{status:04X}"
    return RuntimeError(message) if 0xA700 <= status <= 0xA7FF else Permanent(message)


class Destination:
    name: str

    def open(self) -> None:  # noqa: B027 — optional: a connection for a batch of sends
        pass

    def send(self, sr) -> None:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027
        pass


class DicomDestination(Destination):
    """A PACS by C-STORE, one association per batch of results."""

    def __init__(self, title: str, host: str, port: int, calling: str):
        self.name = f"dicom:{title}@{host}:{port}"
        self.title, self.host, self.port, self.calling, self.assoc = title, host, port, calling, None

    def open(self) -> None:
        from pynetdicom import AE
        from pynetdicom.sop_class import ComprehensiveSRStorage

        ae = AE(ae_title=self.calling)
        ae.add_requested_context(ComprehensiveSRStorage)
        self.assoc = ae.associate(self.host, self.port, ae_title=self.title)
        if not self.assoc.is_established:
            raise ConnectionError(f"association with {self.title}@{self.host}:{self.port} failed")

    def send(self, sr) -> None:
        status = self.assoc.send_c_store(sr)
        if not status or "Status" not in status:
            raise ConnectionError("no response from the destination (association aborted or timed out)")
        if int(status.Status) not in (0x0000, 0xB000, 0xB007, 0xB006):  # success, or a warning: stored
            raise dicom_status_failure(int(status.Status))

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self.assoc = None


class StowDestination(Destination):
    """A DICOMweb server by STOW-RS (PS3.18 10.5), through dicomweb-client."""

    def __init__(self, url: str):
        self.name, self.url = f"stow:{url}", url

    def send(self, sr) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=self.url, timeout=(5, 60))
        client.set_http_retry_params(retry=False)  # the ledger retries, with back-off and dead letters
        try:
            client.store_instances([sr])
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else 0
            message = f"STOW-RS answered HTTP {code}"
            raise (RuntimeError(message) if code in (408, 429) or code >= 500 else Permanent(message)) from None


def destinations(node: Node) -> list[Destination]:
    opts = node.opts
    found: list[Destination] = []
    if opts.forward:
        found.append(DicomDestination(*opts.forward, calling=opts.ae_title))
    if opts.forward_stow:
        found.append(StowDestination(opts.forward_stow))
    return found


class Forwarder:
    def __init__(self, node: Node, destination: Destination):
        self.node, self.destination = node, destination

    def document(self, path: str, label: str, probs: str):
        """The SR of one classified instance (its ledger row's source path, label and probabilities)."""
        return structured_report(path, label, json.loads(probs), self.node.clf.manifest, self.node.engine_hash)

    def run(self) -> None:
        """Deliver due results until the node stops."""
        ledger, name = self.node.ledger, self.destination.name
        while not self.node.stopping.is_set():
            rows = ledger.due(name)
            if not rows:
                self.node.stopping.wait(0.5)
                continue
            try:
                self.destination.open()
            except Exception as e:  # noqa: BLE001 — the destination is unreachable: every row waits and retries
                for uid, *_ in rows:
                    self.failed(uid, f"{type(e).__name__}: {e}", permanent=False)
                continue
            try:
                for uid, path, label, probs in rows:
                    self.deliver(uid, path, label, probs)
            finally:
                self.destination.close()

    def deliver(self, uid: str, path: str, label: str, probs: str) -> None:
        try:
            self.destination.send(self.document(path, label, probs))
        except Permanent as e:
            self.failed(uid, str(e), permanent=True)
        except (ConnectionError, TimeoutError, OSError, RuntimeError) as e:
            self.failed(uid, str(e), permanent=False)
        except Exception as e:  # noqa: BLE001 — e.g. an SR that cannot be built from this source: sending again won't help
            self.failed(uid, f"{type(e).__name__}: {e}", permanent=True)
        else:
            self.node.ledger.delivered(uid, self.destination.name)
            self.node.metrics.delivered.labels(self.destination.name).inc()
            if self.node.audit is not None:
                self.node.audit.delivered(self.destination.name, self.study(uid), uid)
            log.info("delivered", extra={"event": "forward-delivered", "uid": uid, "destination": self.destination.name})

    def study(self, uid: str) -> str:
        return (self.node.ledger.get(uid) or {}).get("study_instance_uid") or ""

    def failed(self, uid: str, error: str, permanent: bool) -> None:
        status = self.node.ledger.failed(uid, self.destination.name, error, permanent, self.node.opts.max_attempts)
        if status == "dead":
            self.node.metrics.dead.labels(self.destination.name).inc()
            if self.node.audit is not None:
                self.node.audit.delivered(self.destination.name, self.study(uid), uid, error=error)
            log.warning("dead-lettered: %s", error, extra={"event": "forward-dead", "uid": uid,
                                                           "destination": self.destination.name})
        else:
            log.info("delivery failed, will retry: %s", error, extra={"event": "forward-retry", "uid": uid,
                                                                      "destination": self.destination.name})
