"""DICOMweb (PS3.18) on the node's HTTP port, under ``/dicomweb``:

- STOW-RS in (10.5): ``POST /dicomweb/studies[/{study}]`` with ``multipart/related; type="application/dicom"``;
  every part goes through the same intake as a C-STORE (:mod:`.intake`), and the response is a DICOM JSON dataset
  with the stored instances (Referenced SOP Sequence) and the failed ones with their Failure Reason (Failed SOP
  Sequence), the reason in words as a ``Warning`` header per failure. 200: all stored; 202: some failed; 409: none
  stored.
- QIDO-RS (10.6) and WADO-RS (10.4) over the node's *results*: the TID 1500 SR of every classified instance, in
  the study of its source — ``GET /dicomweb/studies``, ``…/studies/{study}/series``, ``…/studies/{study}[/series/
  {series}]/instances`` (search, ``application/dicom+json``) and ``GET …/studies/{study}[/series/{series}[/instances/
  {instance}]]`` (retrieve, ``multipart/related; type="application/dicom"``)."""
from __future__ import annotations

import io
import re
import uuid
from email.parser import BytesParser
from typing import TYPE_CHECKING

from .intake import UID

if TYPE_CHECKING:
    from .node import Node

MAX_STOW_BODY = 1 << 30
STOW_ROUTE = re.compile(r"^/dicomweb/studies(?:/(?P<study>[0-9.]+))?$")
ROUTE = re.compile(r"^/dicomweb/studies(?:/(?P<study>[0-9.]+))?(?:/series(?:/(?P<series>[0-9.]+))?)?"
                   r"(?:/instances(?:/(?P<instance>[0-9.]+))?)?$")
FAILURE_STUDY_MISMATCH = 0xA900  # the instance is not of the study the request names
FAILURE_UNREADABLE = 0xC000


class DicomWeb:
    def __init__(self, node: Node, intake):
        self.node, self.intake = node, intake

    def __call__(self, environ, method: str, path: str) -> tuple[str, list[tuple[str, str]], bytes]:
        """(HTTP status, headers, body) for a request under /dicomweb."""
        found = ROUTE.match(path)
        if not found:
            return error("404 Not Found", f"no DICOMweb resource {path[:80]}")
        if method == "POST" and (stow := STOW_ROUTE.match(path)):
            return self.stow(environ, stow["study"])
        if method != "GET":
            return error("405 Method Not Allowed", f"{method} is not served on {path[:80]}")
        if path.endswith(("/series", "/instances")) or path == "/dicomweb/studies":
            return self.search(environ, found, level="series" if path.endswith("/series") else
                               "instances" if path.endswith("/instances") else "studies")
        return self.retrieve(found)

    # -- STOW-RS ---------------------------------------------------------------------------------------
    def stow(self, environ, study: str | None) -> tuple[str, list, bytes]:
        from pydicom import dcmread
        from pydicom.dataset import Dataset

        kind = environ.get("CONTENT_TYPE", "")
        if not kind.lower().startswith("multipart/related") or "application/dicom" not in kind.lower():
            return error("415 Unsupported Media Type", 'STOW-RS takes multipart/related; type="application/dicom"')
        size = int(environ.get("CONTENT_LENGTH") or 0)
        if not 0 < size <= MAX_STOW_BODY:
            return error("400 Bad Request" if size == 0 else "413 Payload Too Large",
                         f"send 1 byte to {MAX_STOW_BODY} bytes of multipart/related DICOM parts")
        message = BytesParser().parsebytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + environ["wsgi.input"].read(size))
        parts = [p for p in message.walk() if not p.is_multipart()] if message.is_multipart() else []
        if not parts:
            return error("400 Bad Request", "the body holds no multipart parts (check the boundary)")
        source = f"STOW-RS {environ.get('REMOTE_ADDR', '?')}"
        stored, failed, warnings = [], [], []
        for part in parts:
            try:
                ds = dcmread(io.BytesIO(part.get_payload(decode=True) or b""))
            except Exception as e:  # noqa: BLE001 — any unreadable part is that part's failure, not the request's
                failed.append(("", "", FAILURE_UNREADABLE))
                warnings.append(f"unreadable part: {type(e).__name__}: {e}")
                continue
            ref = (str(getattr(ds, "SOPClassUID", "")), str(getattr(ds, "SOPInstanceUID", "")))
            if study and str(getattr(ds, "StudyInstanceUID", "")) != study:
                failed.append((*ref, FAILURE_STUDY_MISMATCH))
                warnings.append(f"{ref[1]}: not of study {study}")
                continue
            outcome = self.intake.store(ds, source)
            if outcome.stored:
                stored.append(ref)
            else:
                failed.append((*ref, outcome.status))
                warnings.append(f"{ref[1]}: {outcome.reason}")
        response = Dataset()
        if stored:
            response.ReferencedSOPSequence = [sop(c, i) for c, i in stored]
        if failed:
            response.FailedSOPSequence = [sop(c, i, FailureReason=code) for c, i, code in failed]
        status = "200 OK" if not failed else "202 Accepted" if stored else "409 Conflict"
        headers = [("Warning", f'299 dcube-edge "{w[:200]}"'.replace("\n", " ")) for w in warnings]
        return status, [("Content-Type", "application/dicom+json"), *headers], to_json(response)

    # -- QIDO-RS and WADO-RS over the results ------------------------------------------------------------
    def results(self, study: str | None) -> list:
        """The result SRs (of one study) as the spool keeps them (:mod:`.reports`): the bytes every destination got."""
        return self.node.reports.of_study(study)

    def search(self, environ, found, level: str) -> tuple[str, list, bytes]:
        from urllib.parse import parse_qs

        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        limit, offset = int(query.pop("limit", 1000)), int(query.pop("offset", 0))
        query.pop("includefield", None)
        query.pop("fuzzymatching", None)
        wanted = {"StudyInstanceUID": found["study"], "SeriesInstanceUID": found["series"], **query}
        matches = [ds for ds in self.results(found["study"]) if all(
            str(ds.get(UIDS.get(k, k), "")) == v for k, v in wanted.items() if v and k in ATTRIBUTES | set(UIDS))]
        keys = {"studies": STUDY_LEVEL, "series": SERIES_LEVEL, "instances": INSTANCE_LEVEL}[level]
        rows, seen = [], set()
        for ds in matches:
            key = tuple(str(ds.get(k, "")) for k in keys[:1 if level == "studies" else 2 if level == "series" else 3])
            if key not in seen:
                seen.add(key)
                rows.append(self.entry(ds, keys))
        rows = rows[offset:offset + limit]
        body = b"[" + b",".join(rows) + b"]"
        return ("200 OK" if rows else "204 No Content"), [("Content-Type", "application/dicom+json")], body if rows else b""

    def entry(self, ds, keys: tuple[str, ...]) -> bytes:
        from pydicom.dataset import Dataset

        row = Dataset()
        for keyword in keys:
            if keyword in ds:
                setattr(row, keyword, ds[keyword].value)
        row.RetrieveURL = f"/dicomweb/studies/{ds.StudyInstanceUID}"
        return to_json(row)

    def retrieve(self, found) -> tuple[str, list, bytes]:
        if not found["study"] or not all(UID.match(v) for v in (found["study"], found["series"] or "1",
                                                                found["instance"] or "1")):
            return error("400 Bad Request", "retrieve needs /studies/{study}[/series/{series}[/instances/{instance}]]")
        matches = [ds for ds in self.results(found["study"])
                   if (not found["series"] or ds.SeriesInstanceUID == found["series"])
                   and (not found["instance"] or ds.SOPInstanceUID == found["instance"])]
        if not matches:
            return error("404 Not Found", "no result of this node matches")
        boundary = uuid.uuid4().hex
        parts = []
        for ds in matches:
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buffer.getvalue() + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return "200 OK", [("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')], body


UIDS = {"StudyInstanceUID": "StudyInstanceUID", "SeriesInstanceUID": "SeriesInstanceUID",
        "SOPInstanceUID": "SOPInstanceUID", "0020000D": "StudyInstanceUID", "0020000E": "SeriesInstanceUID",
        "00080018": "SOPInstanceUID"}
ATTRIBUTES = {"PatientID", "Modality", "AccessionNumber", "StudyDate", "SOPClassUID"}
# What each search level returns (PS3.18 Tables 10.6.3-3, -4, -5), from the result SRs.
STUDY_LEVEL = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "PatientName", "PatientID",
               "StudyID", "ReferringPhysicianName")
SERIES_LEVEL = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription")
INSTANCE_LEVEL = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
                  "Modality", "PatientID")


def sop(sop_class: str, instance: str, **extra):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class or "", instance or ""
    for keyword, value in extra.items():
        setattr(item, keyword, value)
    return item


def to_json(ds) -> bytes:
    import json

    return json.dumps(ds.to_json_dict()).encode()


def error(status: str, message: str) -> tuple[str, list, bytes]:
    import json

    return status, [("Content-Type", "application/json")], json.dumps({"error": message}).encode()
