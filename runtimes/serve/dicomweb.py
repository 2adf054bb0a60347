"""DICOMweb (PS3.18) on the node's HTTP port, under ``/dicomweb``: the Studies Service's resources, routed to

- STOW-RS in (:mod:`.stow`): ``POST /studies[/{study}]``, through the same intake as C-STORE;
- QIDO-RS (:mod:`.qido`) over the node's results: ``GET /studies``, ``/series``, ``/instances``,
  ``/studies/{study}/series``, ``/studies/{study}/instances``, ``/studies/{study}/series/{series}/instances``;
- WADO-RS (:mod:`.wado`): ``GET /studies/{study}[/series/{series}[/instances/{instance}]]`` and their
  ``/metadata``.

The results are the TID 1500 SRs of the classified instances, each in the study of its source. Every reply says
what it read (for the audit trail, with the outcome the status gives)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import qido, stow, wado, wsgi
from .intake import UID
from .matching import QueryError
from .negotiation import Offer, choose

if TYPE_CHECKING:
    from .node import Node

LEVELS = ("studies", "series", "instances")
SCOPES = ("study", "series", "instance")
SEARCH_OFFERS = [Offer("application/dicom+json"), Offer("application/json")]


@dataclass
class Reply:
    """An HTTP answer and what it means for the audit trail."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes
    read: list[tuple[str, str, str]] | None = None  # (study, SOP class, SOP instance) read; None: not a read
    query: bool = False  # a QIDO-RS search
    used: tuple[str, str, str, str] | None = None  # /v1/classify of a DICOM instance: patient, study, class, UID

    @property
    def code(self) -> int:
        return int(self.status.split()[0])


def error(status: str, message: str, **audit) -> Reply:
    return Reply(status, [("Content-Type", "application/json")], json.dumps({"error": message}).encode(), **audit)


def resolve(path: str) -> tuple[str, str | None, dict[str, str]] | None:
    """(action, search level, {study, series, instance}) of a path under /dicomweb; None if it names no resource
    this node serves. Actions: search, retrieve, metadata, store."""
    parts = path.rstrip("/").split("/")[2:]  # a trailing slash names the same resource
    if len(parts) == 1 and parts[0] in LEVELS:
        return "search", parts[0], {}
    scope: dict[str, str] = {}
    for depth, word in enumerate(LEVELS):
        if not parts or parts[0] != word:
            return None
        if len(parts) == 1:
            return "search", word, scope
        scope[SCOPES[depth]] = parts[1]
        parts = parts[2:]
        if not parts:
            return "retrieve", None, scope
        if parts == ["metadata"]:
            return "metadata", None, scope
        if depth == 0 and parts == ["instances"]:
            return "search", "instances", scope
    return None


class DicomWeb:
    def __init__(self, node: Node, intake):
        self.node, self.intake = node, intake

    def __call__(self, environ, method: str, path: str) -> Reply:
        found = resolve(path)
        if found is None:
            return error("404 Not Found", f"no DICOMweb resource {path[:80]} here (Studies Service: studies, series, "
                                          "instances, metadata)")
        action, level, scope = found
        bad = next((uid for uid in scope.values() if not UID.match(uid) or len(uid) > 64), None)
        if bad is not None:
            return error("400 Bad Request", f"{bad[:70]!r} is not a UID (digits and dots)")
        storable = (action, level) in (("search", "studies"), ("retrieve", None)) and set(scope) <= {"study"}
        if method == "POST" and storable:
            return Reply(*stow.store(self.intake, environ, scope.get("study")))
        if method != "GET":
            reply = error("405 Method Not Allowed", f"{method} is not served on {path[:80]}")
            reply.headers.append(("Allow", "GET, POST" if storable else "GET"))
            return reply
        if action == "search":
            return self.search(environ, level, scope)
        matches = [ds for ds in self.results(scope["study"])
                   if all(str(ds.get(k, "")) == scope[s] for k, s in (("SeriesInstanceUID", "series"),
                                                                       ("SOPInstanceUID", "instance")) if s in scope)]
        if not matches:
            return error("404 Not Found", "no result of this node matches", read=[])
        accept = wsgi.accept(environ)
        read = [(str(ds.StudyInstanceUID), str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in matches]
        return Reply(*(wado.metadata if action == "metadata" else wado.retrieve)(matches, accept), read=read)

    def search(self, environ, level: str, scope: dict[str, str]) -> Reply:
        params = wsgi.query(environ)
        accept = wsgi.accept(environ, params)
        chosen = choose(accept, SEARCH_OFFERS)
        if chosen is None:
            return Reply(*wado.not_acceptable(accept, SEARCH_OFFERS), query=True)
        try:
            query = qido.parse(level, params, scope)
        except QueryError as e:
            return error("400 Bad Request", str(e), query=True)
        answer = qido.search(self.results(scope.get("study")), query, wsgi.base_url(environ, "/dicomweb"))
        headers = [wsgi.warning(w) for w in answer.warnings]
        if not answer.rows:
            return Reply("204 No Content", headers, b"", query=True)
        body = json.dumps([r.to_json_dict() for r in answer.rows]).encode()
        return Reply("200 OK", [("Content-Type", chosen.media), *headers], body, query=True)

    def results(self, study: str | None) -> list:
        """The result SRs (of one study) as the spool keeps them (:mod:`.reports`): the bytes every destination got."""
        return self.node.reports.of_study(study)
