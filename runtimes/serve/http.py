"""The node's HTTP side (a WSGI app; ``cheroot`` serves it, over TLS where ``--tls-cert`` is given):

- ``POST /v1/classify``: an image (PNG, JPEG, TIFF or DICOM) as the request body; its prediction.
- ``GET /v1/results/{uid}``: an instance's record and each delivery's state; for a refused instance, the reason.
- ``GET /healthz``: liveness (the process answers); ``GET /readyz``: readiness — 503 until the engine is loaded
  and warmed, and while free space is under the watermark.
- ``GET /metrics``: Prometheus text.
- DICOMweb under ``/dicomweb`` (:mod:`.dicomweb`).
- The operator console under ``/ui/`` (:mod:`.console`): its own login, sessions and audit records.

A bearer token is required when one is configured (``/healthz`` and ``/readyz`` excepted); the scheme name is
case-insensitive (RFC 7235 2.1); a 401 names the scheme in ``WWW-Authenticate`` (RFC 6750 3). Every request that
reads results, searches them or classifies a DICOM instance, and every refused token, is an audit event naming
the caller, its outcome taken from the status answered. Bodies may be framed by Content-Length or chunked."""
from __future__ import annotations

import hmac
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import dumps
from . import wsgi
from .audit import SR_STORAGE
from .console import Console
from .dicomweb import DicomWeb, Reply
from .engines import named
from .intake import UID
from .monitor import api as monitor_api
from .monitor.store import ood_of
from .records import reading_of

if TYPE_CHECKING:
    from .node import Node

MAX_BODY = 64 << 20
# cheroot's own limits (PS3.18 says nothing of them): enough worker threads that a few clients trickling their
# headers do not hold every one, and those that do are cut at HEADER_DEADLINE_S; each socket read waits at
# most TIMEOUT_S; headers over MAX_HEADER are refused.
HTTP_THREADS = 32
TIMEOUT_S = 10
HEADER_DEADLINE_S = 20  # from a request's first byte to its last header line, as Apache mod_reqtimeout's header=20
MAX_HEADER = 64 << 10
BACKLOG = 64  # connections the kernel queues while every worker is busy
STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
          409: "409 Conflict",
          413: "413 Payload Too Large", 415: "415 Unsupported Media Type", 422: "422 Unprocessable Entity",
          503: "503 Service Unavailable", 507: "507 Insufficient Storage"}
REALM = 'Bearer realm="dcube-edge"'


class HttpApi:
    def __init__(self, node: Node, intake):
        self.node = node
        self.dicomweb = DicomWeb(node, intake)
        self.console = Console(node, self.not_ready, self.refusal)

    def refusal(self, environ) -> str | None:
        """Why the request's credentials are refused (None: accepted, or no token is configured)."""
        if not self.node.opts.token:
            return None
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "no bearer token"
        if not hmac.compare_digest(credentials.strip().encode(), self.node.opts.token.encode()):
            return "wrong bearer token"
        return None

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/ui" or path.startswith("/ui/"):
            reply = self.console(environ, method, path)  # it authenticates and audits its own
        else:
            reply = self.route(environ, method, path)
            self.audit(environ, method, path, reply)
        start_response(reply.status, [*reply.headers, ("Content-Length", str(len(reply.body)))])
        return [reply.body]

    def route(self, environ, method: str, path: str) -> Reply:
        if path == "/healthz":
            return reply(200, {"status": "ok", "engine_sha256": self.node.engine_hash, **self.node.ledger.counts()})
        if path == "/readyz":
            return self.readiness()
        if why := self.refusal(environ):
            answer = reply(401, {"error": f"{why}: send Authorization: Bearer TOKEN"})
            answer.headers.append(("WWW-Authenticate", REALM + (', error="invalid_token"' if why.startswith("wrong")
                                                                else "")))
            return answer
        if path == "/metrics":
            text, kind = self.node.metrics.text()
            return Reply("200 OK", [("Content-Type", kind)], text)
        if path.startswith("/dicomweb/"):
            if method == "POST" and (full := self.node.out_of_space()):
                return reply(507, {"error": full})
            return self.dicomweb(environ, method, path)
        if path.startswith("/v1/results/") and method == "GET":
            return self.result(path.rsplit("/", 1)[1])
        if path == "/v1/classify" and method == "POST":
            return self.classify(environ)
        if path == "/v1/labels" and method == "POST":
            return reply(*monitor_api.post(self.node, environ))
        if path in ("/v1/engine/promote", "/v1/engine/rollback") and method == "POST":
            return reply(*monitor_api.engine_switch(self.node, path.rsplit("/", 1)[1], environ))
        if path == "/v1/engine" and method == "GET":
            return reply(200, monitor_api.engine_state(self.node))
        return reply(404, {"error": f"no route {method} {path[:80]}"})

    def result(self, uid: str) -> Reply:
        if not UID.match(uid):
            return reply(404, {"error": f"no instance {uid[:70]!r}: a SOP Instance UID is digits and dots"}, read=[])
        found = self.node.ledger.get(uid)
        if found is not None:
            found["ood_score"] = ood_of(self.node.ledger, uid)  # the monitor's (docs/monitoring.md); None: not seen
            found["engine"] = named(self.node.ledger, found.get("engine_sha256"))  # which engine gave it
            read = [(found.get("study_instance_uid") or "", SR_STORAGE, found["result_sr"])] if found.get("result_sr") else []
            return reply(200, found, read=read)
        refused = self.refused(uid)
        return reply(200, refused, read=[]) if refused else reply(404, {"error": f"no instance {uid!r} was received"},
                                                                   read=[])

    def readiness(self) -> Reply:
        reasons = self.not_ready()
        return reply(503, {"status": "not ready", "reasons": reasons}) if reasons else reply(200, {"status": "ready"})

    def not_ready(self) -> list[str]:
        """Why the node is not ready (none: it is)."""
        reasons = []
        if not self.node.ready.is_set():
            reasons.append("the engine is not loaded and warmed yet")
        if full := self.node.out_of_space():
            reasons.append(full)
        if self.node.stopping.is_set():
            reasons.append("stopping")
        return reasons

    def refused(self, uid: str) -> dict | None:
        """What ``rejected/`` holds for a UID that was refused (it has no ledger row): the latest reason."""
        kept = sorted((self.node.opts.spool / "rejected").glob(f"{uid}.*.txt"))
        if not kept:
            return None
        return {"sop_instance_uid": uid, "status": "refused", "error": kept[-1].read_text().strip(),
                "refusals": len(kept)}

    def classify(self, environ) -> Reply:
        if full := self.node.out_of_space():
            return reply(507, {"error": full})
        kind = environ.get("CONTENT_TYPE", "")
        if kind.lower().startswith("multipart/"):
            return reply(415, {"error": "send the image itself as the request body (e.g. curl --data-binary @scan.png), "
                                        "not a multipart form; several instances go to POST /dicomweb/studies"})
        try:
            body = wsgi.body(environ, MAX_BODY, "send one image (PNG, JPEG, TIFF or DICOM), e.g. curl --data-binary "
                                                "@scan.png http://HOST:PORT/v1/classify")
        except wsgi.BodyError as e:
            return Reply(e.status, [("Content-Type", "application/json")], (dumps({"error": str(e)}) + "\n").encode())
        suffix = ".dcm" if body[128:132] == b"DICM" else ".img"
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / f"upload{suffix}"
            f.write_bytes(body)
            with self.node.engine_lock:
                pred = next(iter(self.node.clf.classify([f])))
            used = identity(f) if suffix == ".dcm" else None
        out = {"label": pred.label, "probs": pred.probs, "error": pred.error and pred.error.replace(str(f), "the upload"),
               "decision": None if pred.error else self.node.clf.decision.explain(pred.probs),
               **reading_of(pred), "engine_sha256": self.node.engine_hash}
        return reply(422 if pred.error else 200, out, used=used)

    def audit(self, environ, method: str, path: str, answer: Reply) -> None:
        """The request's audit record, if it is one the trail keeps, with the outcome its status gives."""
        trail = self.node.audit
        if trail is None or path in ("/healthz", "/readyz"):
            return
        caller = environ.get("REMOTE_ADDR", "?")
        if answer.code == 401:
            trail.authentication(caller, f"{method} {path[:200]}: {self.refusal(environ)}")
            return
        outcome = "success" if answer.code < 400 else "minor" if answer.code < 500 else "serious"
        target = path + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        what = f"{method} {target[:400]} -> {answer.status}"
        if answer.query:
            trail.query(caller, target, outcome, description=what)
        elif answer.read is not None:
            trail.read(caller, what, answer.read, outcome)
        elif answer.used:
            trail.used(caller, *answer.used, outcome=outcome, what=what)


def identity(path: Path) -> tuple[str, str, str, str] | None:
    """(Patient ID, Study, SOP Class and SOP Instance UIDs) of a DICOM upload, for the audit trail."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    return tuple(str(ds.get(k, "")) for k in ("PatientID", "StudyInstanceUID", "SOPClassUID", "SOPInstanceUID"))


def reply(code: int, body: object, **audit) -> Reply:
    data = (dumps(body) + "\n").encode() if not isinstance(body, bytes) else body
    return Reply(STATUS.get(code, str(code)), [("Content-Type", "application/json")], data, **audit)


def build_server(node: Node, app, ssl_context=None):
    """The cheroot WSGI server for ``app``, bound (a port taken since the preflight fails here, before
    "serving"), with its own limits against slow or oversized clients; over TLS with ``ssl_context``."""
    from cheroot import wsgi as cheroot_wsgi

    from . import deadline

    opts = node.opts
    server = cheroot_wsgi.Server((opts.host, opts.http_port), app, numthreads=HTTP_THREADS, server_name="dcube-edge",
                                 timeout=TIMEOUT_S, request_queue_size=BACKLOG)
    server.max_request_header_size = MAX_HEADER
    server.max_request_body_size = (1 << 30) + (1 << 20)  # a backstop: each route checks its own limit first
    if ssl_context is not None:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        adapter = BuiltinSSLAdapter(str(opts.tls_cert), str(opts.tls_key))
        adapter.context = ssl_context
        server.ssl_adapter = adapter
    server.prepare()
    deadline.install(server, HEADER_DEADLINE_S)
    return server
