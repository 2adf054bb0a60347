"""The node's HTTP side (a WSGI app served by ``waitress``): ``POST /v1/classify``, ``GET /v1/results/{uid}``,
``GET /healthz``, ``GET /metrics`` and DICOMweb under ``/dicomweb`` (:mod:`.dicomweb`). A bearer token is required
when one is configured (``/healthz`` excepted); the scheme name is case-insensitive (RFC 7235 2.1)."""
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


class HttpApi:
    def __init__(self, node: Node, intake):
        self.node = node
        self.dicomweb = DicomWeb(node, intake)

    def authorised(self, environ) -> bool:
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self.node.opts.token.encode())

    def __call__(self, environ, start_response):
        def reply(code: str, body: object, kind: str = "application/json") -> list[bytes]:
            data = body if isinstance(body, bytes) else (dumps(body) + "\n").encode()
            start_response(code, [("Content-Type", kind), ("Content-Length", str(len(data)))])
            return [data]

        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return reply("200 OK", {"status": "ok", "engine_sha256": self.node.engine_hash, **self.node.ledger.counts()})
        if self.node.opts.token and not self.authorised(environ):
            return reply("401 Unauthorized", {"error": "missing or wrong bearer token (Authorization: Bearer TOKEN)"})
        if path.startswith("/dicomweb/"):
            status, headers, body = self.dicomweb(environ, method, path)
            start_response(status, [*headers, ("Content-Length", str(len(body)))])
            return [body]
        if path == "/metrics":
            return reply("200 OK", *self.node.metrics.text())
        if path.startswith("/v1/results/") and method == "GET":
            uid = path.rsplit("/", 1)[1]
            found = self.node.ledger.get(uid) if UID.match(uid) else None
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
                with self.node.engine_lock:
                    pred = next(iter(self.node.clf.classify([f])))
            out = {"label": pred.label, "probs": pred.probs, "error": pred.error, "engine_sha256": self.node.engine_hash}
            return reply("422 Unprocessable Entity" if pred.error else "200 OK", out)
        return reply("404 Not Found", {"error": f"no route {method} {path[:80]}"})
