"""Results back to the clinic: each result's SR — the one kept in the spool, the same bytes every time —
delivered to every configured destination: a PACS by C-STORE (``--forward AE@HOST:PORT``), a DICOMweb server by
STOW-RS (``--forward-stow URL``, through ``dicomweb-client``). One thread per destination, each working through
its own delivery rows in the ledger, so a destination that is down or refuses never holds up another.

What an answer means comes from pynetdicom's tables of the Storage Service Class statuses (PS3.4 B.2.3):
success and warnings are stored; "Refused: Out of Resources" (0xA7xx), HTTP 408/429/5xx, a refused connection
or a lost association are retried with back-off (1 s … 5 min) for up to ``--retry-for`` (default 72 h) — a
destination that does not answer raises an alert (a log line, then one every ten minutes; the metric
``dcube_destination_up`` is 0) and its results wait; past that time they are dead-lettered, and re-queued by
themselves as soon as it answers again (it is probed while it has such dead letters). Any other failure status or
HTTP 4xx is a refusal: dead-lettered at once with the reason (``dcube-edge spool status``, ``spool retry``)."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .ledger import backoff
from .options import duration_words
from .records import Answer, Delivery, Instance, dimse_answer, status_meaning
from .reports import Unavailable

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")
REMIND_S = 600  # while a destination does not answer, the alert is repeated this often


class Refused(Exception):
    """A refusal that sending again will not change."""


class Transient(Exception):
    """The destination answered that it cannot take it now (e.g. out of resources)."""


class Destination:
    name: str

    def open(self) -> None:  # noqa: B027 — optional: a connection for a batch of sends
        pass

    def send(self, sr) -> None:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027
        pass

    def probe(self) -> None:
        """Raise unless the destination answers."""
        self.open()
        self.close()


class DicomDestination(Destination):
    """A PACS by C-STORE, one association per batch of results."""

    def __init__(self, title: str, host: str, port: int, calling: str):
        self.name = f"dicom:{title}@{host}:{port}"
        self.title, self.host, self.port, self.calling, self.assoc = title, host, port, calling, None

    def open(self) -> None:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE
        from pynetdicom.sop_class import ComprehensiveSRStorage

        ae = AE(ae_title=self.calling)
        ae.add_requested_context(ComprehensiveSRStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self.assoc = ae.associate(self.host, self.port, ae_title=self.title)
        if not self.assoc.is_established:
            raise ConnectionError(f"association with {self.title}@{self.host}:{self.port} failed")

    def send(self, sr) -> None:
        status = self.assoc.send_c_store(sr)
        if not status or "Status" not in status:
            raise ConnectionError("no response from the destination (association aborted or timed out)")
        code = int(status.Status)
        answer = dimse_answer(code)
        if answer is not Answer.STORED:
            message = f"destination answered status 0x{code:04X} ({status_meaning(code)})"
            raise Transient(message) if answer is Answer.TRANSIENT else Refused(message)

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
            raise (Transient(message) if code in (408, 429) or code >= 500 else Refused(message)) from None

    def probe(self) -> None:
        import requests

        if requests.get(self.url, timeout=5).status_code >= 500:
            raise ConnectionError(f"{self.url} answers with a server error")


def destinations(node: Node) -> list[Destination]:
    opts = node.opts
    found: list[Destination] = []
    found += [DicomDestination(*address, calling=opts.ae_title) for address in opts.forward]
    if opts.forward_stow:
        found.append(StowDestination(opts.forward_stow))
    return found


class Forwarder:
    def __init__(self, node: Node, destination: Destination):
        self.node, self.destination = node, destination
        self.started = time.time()
        self.down_since: float | None = None  # when it stopped answering
        self.answered = False  # it answered since this node started
        self.checked = False  # dead letters a previous run gave up were checked for at the start
        self.failures, self.wake, self.reminded = 0, 0.0, 0.0
        node.metrics.destination_up.labels(destination.name).set(1)

    def run(self) -> None:
        """Deliver due results until the node stops (a full disk pauses it)."""
        while not self.node.stopping.is_set():
            if not self.node.paused_by_disk(self.cycle):
                self.node.stopping.wait(5)

    def cycle(self) -> None:
        ledger, name = self.node.ledger, self.destination.name
        rows = ledger.due(name) if time.time() >= self.wake else []
        if not rows:
            if time.time() >= self.wake and (self.down_since or not self.checked) and ledger.expired(name):
                self.checked = True
                self.probe()
            self.node.stopping.wait(0.5)
            return
        try:
            self.destination.open()
        except Exception as e:  # noqa: BLE001 — the destination is unreachable: every row waits and retries
            self.unreachable(f"{type(e).__name__}: {e}", [r.uid for r in rows])
            return
        try:
            for row in rows:
                if self.node.stopping.is_set():
                    break
                self.deliver(row)
        finally:
            self.destination.close()

    def deliver(self, row: Instance) -> None:
        try:
            report = self.node.ledger.report(row.report)
            if report is None:
                raise Unavailable(f"the result SR {row.report} is not in the ledger")
            sr = self.node.reports.dataset(report)
        except Unavailable as e:
            self.failed(row.uid, str(e), refused=True)
            return
        try:
            self.destination.send(sr)
        except Refused as e:
            self.failed(row.uid, str(e), refused=True)
        except (Transient, ConnectionError, TimeoutError, OSError, RuntimeError) as e:
            self.failed(row.uid, str(e) or type(e).__name__, refused=False)
        else:
            self.node.ledger.delivered(row.uid, self.destination.name)
            self.node.metrics.delivered.labels(self.destination.name).inc()
            if self.node.audit is not None:
                self.node.audit.delivered(self.destination.name, row.study or "", row.report or row.uid)  # the SR sent
            log.info("delivered", extra={"event": "forward-delivered", "uid": row.uid,
                                         "destination": self.destination.name})
            self.up()

    def probe(self) -> None:
        try:
            self.destination.probe()
        except Exception as e:  # noqa: BLE001 — still not answering
            self.unreachable(f"{type(e).__name__}: {e}", [])
        else:
            self.up()

    def up(self) -> None:
        """It answers: the alert ends, and what was given up while it did not answer goes back in the queue."""
        name = self.destination.name
        if self.down_since is not None:
            log.warning("%s answers again after %.0f s", name, time.time() - self.down_since,
                        extra={"event": "destination-up", "destination": name})
        if self.down_since is not None or not self.answered:  # this outage's, or (first contact) earlier runs'
            if n := self.node.ledger.requeue_expired(name, None if self.down_since is not None else self.started):
                log.warning("re-queued %d result(s) given up while %s did not answer", n, name,
                            extra={"event": "forward-requeued", "destination": name})
        self.down_since, self.answered, self.failures, self.wake = None, True, 0, 0.0
        self.node.metrics.destination_up.labels(name).set(1)

    def unreachable(self, error: str, uids: list[str]) -> None:
        """It does not answer: the rows tried wait, the alert is raised (and repeated), the next try backs off."""
        name, now = self.destination.name, time.time()
        for uid in uids:
            self.failed(uid, error, refused=False)
        self.failures += 1
        self.wake = now + backoff(self.failures)
        self.node.metrics.destination_up.labels(name).set(0)
        if self.down_since is None or now - self.reminded >= REMIND_S:
            self.down_since = self.down_since or now
            self.reminded = now
            waiting = self.node.ledger.delivery_counts().get(name, {})
            since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
            log.warning("%s does not answer (%s) since %s: %d result(s) waiting, %d dead-lettered (each is retried "
                        "for %s, then kept and re-queued when it answers)", name, error, since,
                        waiting.get(Delivery.PENDING.value, 0), waiting.get(Delivery.DEAD.value, 0),
                        duration_words(self.node.opts.retry_for),
                        extra={"event": "destination-down", "destination": name})

    def failed(self, uid: str, error: str, refused: bool) -> None:
        name = self.destination.name
        state = self.node.ledger.failed(uid, name, error, refused, self.node.opts.retry_for)
        if state is Delivery.DEAD:
            self.node.metrics.dead.labels(name).inc()
            if self.node.audit is not None:
                row = self.node.ledger.instance(uid)
                self.node.audit.delivered(name, (row.study if row else "") or "", (row.report if row else None) or uid,
                                          error=error)
            log.warning("dead-lettered: %s", error, extra={"event": "forward-dead", "uid": uid, "destination": name})
        else:
            log.info("delivery failed, will retry: %s", error, extra={"event": "forward-retry", "uid": uid,
                                                                      "destination": name})
