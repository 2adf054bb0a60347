"""The node's HTTP side (a WSGI app; ``cheroot`` serves it, over TLS where ``--tls-cert`` is given):

- ``POST /v1/classify``: an image (PNG, JPEG, TIFF or DICOM) as the request body; its prediction.
- ``GET /v1/results/{uid}``: an instance's record and each delivery's state; for a refused instance, the reason.
- ``GET /healthz``: liveness (the process answers); ``GET /readyz``: readiness — 503 until the engine is loaded
  and warmed, and while free space is under the watermark.
- ``GET /metrics``: Prometheus text.
- DICOMweb under ``/dicomweb`` (:mod:`.dicomweb`).

A bearer token is required when one is configured (``/healthz`` and ``/readyz`` excepted); the scheme name is
case-insensitive (RFC 7235 2.1). Every read of a result is an audit event naming the caller."""
from __future__ import annotations

import hmac
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import dumps
from .dicomweb import DicomWeb
from .intake import UID

if TYPE_CHECKING:
    from .node import Node

MAX_BODY = 64 << 20
STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 404: "404 Not Found",
          413: "413 Payload Too Large", 415: "415 Unsupported Media Type", 422: "422 Unprocessable Entity",
          503: "503 Service Unavailable", 507: "507 Insufficient Storage"}


class HttpApi:
    def __init__(self, node: Node, intake):
        self.node = node
        self.dicomweb = DicomWeb(node, intake)

    def authorised(self, environ) -> bool:
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self.node.opts.token.encode())

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        code, headers, body = self.route(environ, method, path)
        start_response(STATUS.get(code, code) if isinstance(code, int) else code,
                       [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def route(self, environ, method: str, path: str) -> tuple[int | str, list, bytes]:
        if path == "/healthz":
            return reply(200, {"status": "ok", "engine_sha256": self.node.engine_hash, **self.node.ledger.counts()})
        if path == "/readyz":
            return self.readiness()
        if self.node.opts.token and not self.authorised(environ):
            return reply(401, {"error": "missing or wrong bearer token (Authorization: Bearer TOKEN)"})
        caller = environ.get("REMOTE_ADDR", "?")
        if path == "/metrics":
            text, kind = self.node.metrics.text()
            return 200, [("Content-Type", kind)], text
        if path.startswith("/dicomweb/"):
            if method == "POST" and (full := self.node.out_of_space()):
                return reply(507, {"error": full})
            self.audit_read(caller, environ, path)
            return self.dicomweb(environ, method, path)
        if path.startswith("/v1/results/") and method == "GET":
            uid = path.rsplit("/", 1)[1]
            if not UID.match(uid):
                return reply(404, {"error": f"no instance {uid[:70]!r}: a SOP Instance UID is digits and dots"})
            found = self.node.ledger.get(uid) or self.refused(uid)
            if found and self.node.audit is not None:
                self.node.audit.read(caller, f"GET {path}", found.get("study_instance_uid") or "", uid)
            return reply(200, found) if found else reply(404, {"error": f"no instance {uid!r} was received"})
        if path == "/v1/classify" and method == "POST":
            return self.classify(environ)
        return reply(404, {"error": f"no route {method} {path[:80]}"})

    def readiness(self) -> tuple[int, list, bytes]:
        reasons = []
        if not self.node.ready.is_set():
            reasons.append("the engine is not loaded and warmed yet")
        if full := self.node.out_of_space():
            reasons.append(full)
        if self.node.stopping.is_set():
            reasons.append("stopping")
        return reply(503, {"status": "not ready", "reasons": reasons}) if reasons else reply(200, {"status": "ready"})

    def refused(self, uid: str) -> dict | None:
        """What ``rejected/`` holds for a UID that was refused (it has no ledger row): the latest reason."""
        kept = sorted((self.node.opts.spool / "rejected").glob(f"{uid}.*.txt"))
        if not kept:
            return None
        return {"sop_instance_uid": uid, "status": "refused", "error": kept[-1].read_text().strip(),
                "refusals": len(kept)}

    def classify(self, environ) -> tuple[int, list, bytes]:
        if full := self.node.out_of_space():
            return reply(507, {"error": full})
        kind = environ.get("CONTENT_TYPE", "")
        if kind.lower().startswith("multipart/"):
            return reply(415, {"error": "send the image itself as the request body (e.g. curl --data-binary @scan.png), "
                                        "not a multipart form; several instances go to POST /dicomweb/studies"})
        size = int(environ.get("CONTENT_LENGTH") or 0)
        if size == 0:
            return reply(400, {"error": "the request has no body: send one image (PNG, JPEG, TIFF or DICOM), e.g. "
                                        "curl --data-binary @scan.png http://HOST:PORT/v1/classify"})
        if size > MAX_BODY:
            return reply(413, {"error": f"the body is {size} bytes; one image of at most {MAX_BODY} bytes"})
        body = environ["wsgi.input"].read(size)
        suffix = ".dcm" if body[128:132] == b"DICM" else ".img"
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / f"upload{suffix}"
            f.write_bytes(body)
            with self.node.engine_lock:
                pred = next(iter(self.node.clf.classify([f])))
        out = {"label": pred.label, "probs": pred.probs, "error": pred.error and pred.error.replace(str(f), "the upload"),
               "decision": None if pred.error else self.node.clf.decision.explain(pred.probs),
               "engine_sha256": self.node.engine_hash}
        return reply(422 if pred.error else 200, out)

    def audit_read(self, caller: str, environ, path: str) -> None:
        if self.node.audit is None or environ.get("REQUEST_METHOD") != "GET":
            return
        query = path.endswith(("/studies", "/series", "/instances"))
        self.node.audit.read(caller, f"{'QIDO-RS' if query else 'WADO-RS'} {path}?{environ.get('QUERY_STRING', '')}",
                             query=query)


def reply(code: int, body: object) -> tuple[int, list, bytes]:
    data = (dumps(body) + "\n").encode() if not isinstance(body, bytes) else body
    return code, [("Content-Type", "application/json")], data

