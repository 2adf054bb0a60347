"""``dcube-edge serve``: a scanner-side DICOM node over one engine (extra ``serve``; torch-free).

- DICOM in: a C-STORE/C-ECHO SCP (``pynetdicom``) for the storage classes a scanner sends. Each instance is
  decoded with the same reader ``classify`` uses, written atomically into the spool and recorded in the ledger
  *before* success is returned; one it cannot use gets a failure status with the reason and is kept in
  ``rejected/``. Calling AE titles outside ``allow_ae`` are refused at association.
- A batcher thread classifies pending instances from every association and request in batches of up to
  ``max_batch``, waiting at most ``max_delay_ms`` for a batch to fill.
- The ledger (SQLite, WAL) records every received instance and its one result. After ``kill -9`` and a restart
  on the same spool, pending instances are classified; a result is written only to a pending row, so nothing
  acknowledged is lost and nothing gets two results. The engine's hash is stored with the spool: another engine
  needs another spool (or ``reclassify``).
- HTTP (``waitress`` WSGI): ``POST /v1/classify``, ``GET /v1/results/{uid}``, ``GET /healthz``, ``GET /metrics``
  (Prometheus text from ``prometheus_client``). A bearer token is required when a token is configured.
"""
from __future__ import annotations

import hmac
import json
import re
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dcube_edge.errors import UserError

from .files import dumps, sha256

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # a DICOM UID: digits and dots, never a path
MAX_BODY = 64 << 20
MAX_ASSOCIATIONS = 64
FAILURE_CANNOT_USE = 0xC000  # "Cannot understand" class of C-STORE failure statuses
FAILURE_DUPLICATE = 0x0111  # "Duplicate SOP Instance" (PS3.7 C.5.8): the UID is held with other pixels


@dataclass
class ServeOptions:
    spool: Path
    host: str = "127.0.0.1"
    dicom_port: int = 11112
    http_port: int = 8080
    ae_title: str = "DCUBE"
    allow_ae: tuple[str, ...] = ()
    token: str | None = None
    max_batch: int = 16
    max_delay_ms: int = 50
    workers: int = 1  # threads decoding a batch's files
    reclassify: bool = False
    forward: tuple[str, str, int] | None = None  # (AE title, host, port) of the PACS that receives the SRs

    def __post_init__(self) -> None:
        """What the node must not start with, refused before anything is created."""
        for option, title in [("--ae-title", self.ae_title), *(("--allow-ae", a) for a in self.allow_ae),
                              *([("--forward", self.forward[0])] if self.forward else [])]:
            check_ae_title(title, option)
        if not is_loopback(self.host) and not (self.token and self.allow_ae):
            raise UserError(f"--host {self.host} is reachable from the network: also pass --token-file (HTTP) and "
                             "--allow-ae with at least one calling AE title (DICOM)")


def check_ae_title(title: str, option: str) -> None:
    """An AE title as PS3.5 6.2 allows it: 1-16 characters of the default repertoire, no backslash."""
    if not title.strip() or len(title) > 16 or not title.isascii() or "\\" in title or not title.isprintable():
        raise UserError(f"{option} {title!r} is not an AE title: 1 to 16 printable ASCII characters, no backslash "
                         "(PS3.5 6.2)")


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise UserError(f"--host {host!r} is not an IP address") from None


class Ledger:
    """Every received instance and its result, in ``spool/ledger.sqlite`` (one connection, one lock)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("CREATE TABLE IF NOT EXISTS instances (uid TEXT PRIMARY KEY, path TEXT, source TEXT, "
                            "received REAL, status TEXT, label TEXT, probs TEXT, error TEXT, engine TEXT, "
                            "classified REAL, batch INTEGER, forwarded INTEGER DEFAULT 0, "
                            "forward_attempts INTEGER DEFAULT 0, forward_next REAL DEFAULT 0, forward_error TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(instances)")}
            if "content" not in columns:  # spools from before duplicates were told apart
                self.db.execute("ALTER TABLE instances ADD COLUMN content TEXT")

    def meta(self, key: str, value: str | None = None) -> str | None:
        with self.lock:
            if value is not None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def add(self, uid: str, path: Path, source: str, content: str | None = None) -> bool:
        """Record a received instance (committed on return); False if this UID was already received."""
        with self.lock:
            cur = self.db.execute("INSERT OR IGNORE INTO instances (uid, path, source, received, status, content) "
                                  "VALUES (?, ?, ?, ?, 'pending', ?)", (uid, str(path), source, time.time(), content))
        return cur.rowcount == 1

    def held(self, uid: str) -> tuple[str, str | None] | None:
        """(spool path, content hash) of a received UID, or None."""
        with self.lock:
            return self.db.execute("SELECT path, content FROM instances WHERE uid = ?", (uid,)).fetchone()

    def pending(self, limit: int) -> list[tuple[str, str, float]]:
        """(uid, path, received) of instances still waiting for a result, oldest first."""
        with self.lock:
            return self.db.execute("SELECT uid, path, received FROM instances WHERE status = 'pending' "
                                   "ORDER BY received LIMIT ?", (limit,)).fetchall()

    def finish(self, results: list[tuple[str, str | None, dict, str | None]], engine: str, now: float) -> list[str]:
        """Store results, each only on a still-pending row (so no instance ever gets two); the UIDs written."""
        n = len(results)
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            written = [uid for uid, label, probs, err in results if self.db.execute(
                "UPDATE instances SET status = ?, label = ?, probs = ?, error = ?, engine = ?, classified = ?, "
                "batch = ? WHERE uid = ? AND status = 'pending'",
                ("error" if err else "done", label, dumps(probs, indent=None), err, engine, now, n, uid)).rowcount]
            self.db.execute("COMMIT")
        return written

    def to_forward(self, limit: int = 16) -> list[tuple[str, str, str, str]]:
        """Classified instances whose SR the PACS has not acknowledged yet and whose back-off has passed."""
        with self.lock:
            return self.db.execute("SELECT uid, path, label, probs FROM instances WHERE status = 'done' AND "
                                   "forwarded = 0 AND forward_next <= ? ORDER BY classified LIMIT ?",
                                   (time.time(), limit)).fetchall()

    def forwarded(self, uid: str, error: str | None) -> None:
        """Record a forwarding attempt: acknowledged, or failed and retried after 1, 2, 4, … 60 s."""
        with self.lock:
            if error is None:
                self.db.execute("UPDATE instances SET forwarded = 1, forward_error = NULL, forward_attempts = "
                                "forward_attempts + 1 WHERE uid = ?", (uid,))
            else:
                self.db.execute("UPDATE instances SET forward_attempts = forward_attempts + 1, forward_error = ?, "
                                "forward_next = ? + MIN(60, 1 << MIN(forward_attempts, 6)) WHERE uid = ?",
                                (error[:200], time.time(), uid))

    def reset(self) -> None:
        with self.lock:
            self.db.execute("UPDATE instances SET status = 'pending', label = NULL, probs = NULL, error = NULL "
                            "WHERE status IN ('done', 'error')")

    def get(self, uid: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT uid, source, received, status, label, probs, error, engine, classified, "
                                  "batch, forwarded, forward_attempts, forward_error FROM instances WHERE uid = ?",
                                  (uid,)).fetchone()
        if row is None:
            return None
        keys = ("sop_instance_uid", "source", "received", "status", "label", "probs", "error", "engine_sha256",
                "classified", "batch_size", "forwarded", "forward_attempts", "forward_error")
        out = dict(zip(keys, row))
        out["probs"] = json.loads(out["probs"]) if out["probs"] else None
        return out

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.db.execute("SELECT status, COUNT(*) FROM instances GROUP BY status").fetchall())


class Service:
    """The engine, the spool, the ledger, the batcher, the DICOM and HTTP servers."""

    def __init__(self, engine_dir: Path, opts: ServeOptions, trusted_keys: list[Path] | None = None):
        from . import load

        self.opts = opts
        self.clf = load(engine_dir, trusted_keys=trusted_keys)
        self.engine_hash = sha256(Path(engine_dir) / "manifest.json")
        for sub in ("instances", "rejected"):
            (opts.spool / sub).mkdir(parents=True, exist_ok=True)
        for stale in (opts.spool / "instances").glob(".*.partial"):
            stale.unlink()  # a write a kill interrupted: never acknowledged, so the sender still has it
        self.ledger = Ledger(opts.spool / "ledger.sqlite")
        recorded = self.ledger.meta("engine_sha256")
        if recorded and recorded != self.engine_hash:
            if not opts.reclassify:
                raise UserError(f"{opts.spool} holds results of another engine (manifest sha256 {recorded[:12]}…); "
                                 "use a new --spool, or pass --reclassify to classify everything again with this one")
            self.ledger.reset()
        self.ledger.meta("engine_sha256", self.engine_hash)
        self.engine_lock = threading.Lock()  # one engine call at a time: an OpenVINO infer request is not thread-safe
        self.store_lock = threading.Lock()  # a UID's look-up, file and ledger row change together
        self.wake = threading.Condition()
        self.stopping = threading.Event()
        self._metrics()

    # -- metrics ---------------------------------------------------------------------------------------
    def _metrics(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.received = Counter("dcube_instances_received", "Instances received and acknowledged", registry=self.registry)
        self.rejected = Counter("dcube_instances_rejected", "Instances refused with a failure status", registry=self.registry)
        self.classified = Counter("dcube_instances_classified", "Results written", registry=self.registry)
        self.queue = Gauge("dcube_queue_depth", "Instances waiting for a result", registry=self.registry)
        self.batches = Histogram("dcube_batch_size", "Images per engine call", registry=self.registry,
                                 buckets=(1, 2, 4, 8, 16, 32, 64))
        self.latency = Histogram("dcube_end_to_end_seconds", "Receipt to result", registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    # -- DICOM -----------------------------------------------------------------------------------------
    def on_echo(self, event) -> int:
        return 0x0000

    def on_store(self, event) -> int | object:
        """Decode-check, write atomically, record in the ledger, then acknowledge; otherwise a failure status."""
        import os

        from .images import ImageError

        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = str(getattr(ds, "SOPInstanceUID", ""))
        source = f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
        if not UID.match(uid) or len(uid) > 64:
            return self._reject(ds, f"invalid SOP Instance UID {uid[:70]!r}", None)
        fd, tmp = tempfile.mkstemp(prefix=f".{uid}.", suffix=".partial", dir=self.opts.spool / "instances")
        os.close(fd)
        try:
            ds.save_as(tmp, enforce_file_format=True)
            try:
                content = self._check(Path(tmp))
            except ImageError as e:
                return self._reject(ds, str(e), Path(tmp))
            target = self.opts.spool / "instances" / f"{uid}.dcm"
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            with self.store_lock:
                held = self.ledger.held(uid)
                if held is None:
                    os.replace(tmp, target)
                    self.ledger.add(uid, target, source, content)
                    self.received.inc()
                elif (held[1] or self._content_of(Path(held[0]))) != content:
                    # Never overwrite: the first image keeps its file and result, the second is kept in rejected/.
                    return self._reject(ds, "SOP Instance UID already received with other pixel data; send the "
                                            "new image under a new UID", Path(tmp), FAILURE_DUPLICATE)
                # else: a resend of the pixels already held (a sender's retry): acknowledged, nothing changes
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        with self.wake:
            self.wake.notify()
        return 0x0000

    def _check(self, path: Path) -> str:
        """Decode with the reader ``classify`` uses (what passes here can be classified); the sha256 of the
        decoded pixels, which tells a sender's retry from another image under the same UID."""
        import hashlib

        from .dicom import read_dicom

        pixels = read_dicom(path)
        return hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()

    def _content_of(self, path: Path) -> str | None:
        from .images import ImageError

        try:
            return self._check(path)
        except (ImageError, OSError):
            return None

    def _reject(self, ds, reason: str, written: Path | None, code: int = FAILURE_CANNOT_USE) -> tuple:
        from pydicom.dataset import Dataset

        name = re.sub(r"[^0-9.]", "_", str(getattr(ds, "SOPInstanceUID", "unknown")))[:64] or "unknown"
        keep = self.opts.spool / "rejected" / f"{name}.{int(time.time() * 1e6)}.dcm"
        if written is not None:
            keep.write_bytes(Path(written).read_bytes())
        else:
            ds.save_as(keep, enforce_file_format=False)
        keep.with_suffix(".txt").write_text(reason + "\n")
        self.rejected.inc()
        status = Dataset()
        status.Status = code
        status.ErrorComment = reason[:64]
        return status

    def dicom_server(self):
        from pynetdicom import AE, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.opts.ae_title)
        ae.maximum_associations = MAX_ASSOCIATIONS  # pynetdicom's default (10) refused a 16-sender load test
        ae.supported_contexts = StoragePresentationContexts
        ae.add_supported_context(Verification)
        if self.opts.allow_ae:
            ae.require_calling_aet = list(self.opts.allow_ae)
        handlers = [(evt.EVT_C_STORE, self.on_store), (evt.EVT_C_ECHO, self.on_echo)]
        return ae.start_server((self.opts.host, self.opts.dicom_port), block=False, evt_handlers=handlers)

    # -- batching --------------------------------------------------------------------------------------
    def batcher(self) -> None:
        """Pending instances (including those a previous run acknowledged but never classified) in batches."""
        while not self.stopping.is_set():
            rows = self.ledger.pending(self.opts.max_batch)
            if len(rows) < self.opts.max_batch:
                with self.wake:
                    self.wake.wait(self.opts.max_delay_ms / 1000 if rows else 0.5)
                rows = self.ledger.pending(self.opts.max_batch)
            if rows:
                self.classify_rows(rows)
            self.queue.set(self.ledger.counts().get("pending", 0))

    def classify_rows(self, rows: list[tuple[str, str, float]]) -> None:
        with self.engine_lock:
            preds = list(self.clf.classify([p for _, p, _ in rows], batch_size=len(rows), workers=self.opts.workers))
        self.batches.observe(len(rows))
        results = [(uid, p.label, p.probs, p.error) for (uid, _, _), p in zip(rows, preds)]
        now = time.time()
        written = set(self.ledger.finish(results, self.engine_hash, now))
        self.classified.inc(len(written))
        for uid, _, received in rows:
            if uid in written:
                self.latency.observe(max(0.0, now - received))

    # -- results back to the clinic ----------------------------------------------------------------------
    def structured_report(self, source_path: str, label: str, probs: dict):
        """A Comprehensive SR (highdicom) with the label and per-class probabilities, referencing the source
        image; its UIDs derive from the source and the engine, so a retried send is the same document."""
        from highdicom.sr import (
            CodeContentItem,
            CodedConcept,
            ComprehensiveSR,
            ContainerContentItem,
            ContentSequence,
            ImageContentItem,
            NumContentItem,
            RelationshipTypeValues,
        )
        from pydicom import dcmread
        from pydicom.uid import generate_uid

        src = dcmread(source_path, stop_before_pixels=True)
        scheme, contains = "99DCUBE", RelationshipTypeValues.CONTAINS
        root = ContainerContentItem(CodedConcept("report", scheme, "dcube-edge classification"))
        items = [CodeContentItem(CodedConcept("label", scheme, "Predicted class"),
                                 CodedConcept(label, scheme, label), relationship_type=contains)]
        items += [NumContentItem(CodedConcept(f"p-{c}", scheme, f"Probability of {c}"), float(p),
                                 CodedConcept("1", "UCUM", "no units"), relationship_type=contains)
                  for c, p in probs.items()]
        items.append(ImageContentItem(CodedConcept("source", scheme, "Classified image"), src.SOPClassUID,
                                      src.SOPInstanceUID, relationship_type=contains))
        root.ContentSequence = ContentSequence(items, is_root=False)
        seed = [str(src.SOPInstanceUID), self.engine_hash]
        return ComprehensiveSR([src], root, generate_uid(entropy_srcs=[*seed, "series"]), 990,
                               generate_uid(entropy_srcs=[*seed, "sr"]), 1, manufacturer="dcube-edge",
                               is_complete=True)

    def forwarder(self) -> None:
        """Send each result's SR to the PACS; kept in the ledger and retried with back-off until acknowledged."""
        from pynetdicom import AE
        from pynetdicom.sop_class import ComprehensiveSRStorage

        title, host, port = self.opts.forward
        ae = AE(ae_title=self.opts.ae_title)
        ae.add_requested_context(ComprehensiveSRStorage)
        while not self.stopping.is_set():
            rows = self.ledger.to_forward()
            if not rows:
                self.stopping.wait(0.5)
                continue
            assoc = ae.associate(host, port, ae_title=title)
            if not assoc.is_established:
                for uid, *_ in rows:
                    self.ledger.forwarded(uid, f"association with {title}@{host}:{port} failed")
                continue
            try:
                for uid, path, label, probs in rows:
                    try:
                        status = assoc.send_c_store(self.structured_report(path, label, json.loads(probs)))
                        ok = bool(status) and int(status.Status) == 0
                        self.ledger.forwarded(uid, None if ok else f"PACS status {getattr(status, 'Status', 'none')}")
                    except Exception as e:  # noqa: BLE001 — one bad instance must not stop the others
                        self.ledger.forwarded(uid, f"{type(e).__name__}: {e}")
            finally:
                assoc.release()

    # -- HTTP ------------------------------------------------------------------------------------------
    def wsgi(self, environ, start_response):
        def reply(code: str, body: object, kind: str = "application/json") -> list[bytes]:
            data = body if isinstance(body, bytes) else (dumps(body) + "\n").encode()
            start_response(code, [("Content-Type", kind), ("Content-Length", str(len(data)))])
            return [data]

        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return reply("200 OK", {"status": "ok", "engine_sha256": self.engine_hash, **self.ledger.counts()})
        if self.opts.token:
            given = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.opts.token}".encode()):
                return reply("401 Unauthorized", {"error": "missing or wrong bearer token"})
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return reply("200 OK", generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path.startswith("/v1/results/") and method == "GET":
            uid = path.rsplit("/", 1)[1]
            found = self.ledger.get(uid) if UID.match(uid) else None
            return reply("200 OK", found) if found else reply("404 Not Found", {"error": f"no instance {uid[:70]!r}"})
        if path == "/v1/classify" and method == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            if not 0 < size <= MAX_BODY:
                return reply("413 Payload Too Large", {"error": f"body must be 1 byte to {MAX_BODY} bytes"})
            body = environ["wsgi.input"].read(size)
            suffix = ".dcm" if body[128:132] == b"DICM" else ".png"
            with tempfile.TemporaryDirectory() as tmp:
                f = Path(tmp) / f"upload{suffix}"
                f.write_bytes(body)
                with self.engine_lock:
                    pred = next(iter(self.clf.classify([f])))
            out = {"label": pred.label, "probs": pred.probs, "error": pred.error, "engine_sha256": self.engine_hash}
            return reply("422 Unprocessable Entity" if pred.error else "200 OK", out)
        return reply("404 Not Found", {"error": f"no route {method} {path[:80]}"})

    def run(self) -> None:
        """Serve until interrupted; the DICOM server, the batcher and waitress share the process."""
        from waitress import create_server

        with self.clf:
            dicom = self.dicom_server()
            worker = threading.Thread(target=self.batcher, name="batcher", daemon=True)
            worker.start()
            if self.opts.forward:
                threading.Thread(target=self.forwarder, name="forwarder", daemon=True).start()
            http = create_server(self.wsgi, host=self.opts.host, port=self.opts.http_port, threads=4)
            try:
                http.run()
            except KeyboardInterrupt:
                pass
            finally:
                self.stopping.set()
                dicom.shutdown()
                http.close()
                worker.join(timeout=5)
