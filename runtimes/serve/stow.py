"""STOW-RS in (PS3.18 10.5): ``POST /dicomweb/studies[/{study}]`` with ``multipart/related;
type="application/dicom"``, framed by Content-Length or sent chunked. Every part goes through the same intake as
a C-STORE (:mod:`.intake`); the response is a DICOM JSON dataset with the stored instances (Referenced SOP
Sequence) and the failed ones with their Failure Reason (Failed SOP Sequence), the reason in words as a
``Warning`` header per failure. 200: all stored; 202: some failed; 409: none stored."""
from __future__ import annotations

import io
import json
from email.parser import BytesParser

from . import wsgi
from .negotiation import choose
from .wado import JSON_OFFERS, not_acceptable

MAX_STOW_BODY = 1 << 30
FAILURE_STUDY_MISMATCH = 0xA900  # the instance is not of the study the request names
FAILURE_UNREADABLE = 0xC000
HINT = 'send multipart/related; type="application/dicom" parts'


def store(intake, environ, study: str | None) -> tuple[str, list, bytes]:
    """Take every part of a STOW-RS request through ``intake``; the response."""
    from pydicom.dataset import Dataset

    kind = environ.get("CONTENT_TYPE", "")
    if not kind.lower().startswith("multipart/related") or "application/dicom" not in kind.lower():
        return error("415 Unsupported Media Type", 'STOW-RS takes multipart/related; type="application/dicom"')
    answer_as = choose(wsgi.accept(environ), JSON_OFFERS)
    if answer_as is None:
        return not_acceptable(wsgi.accept(environ), JSON_OFFERS)
    try:
        data = wsgi.body(environ, MAX_STOW_BODY, HINT)
    except wsgi.BodyError as e:
        return error(e.status, str(e))
    message = BytesParser().parsebytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + data)
    parts = [p for p in message.walk() if not p.is_multipart()] if message.is_multipart() else []
    if not parts:
        return error("400 Bad Request", "the body holds no multipart parts (check the boundary)")
    stored, failed, warnings = [], [], []
    for part in parts:
        outcome = take(intake, part.get_payload(decode=True) or b"", study, f"STOW-RS {environ.get('REMOTE_ADDR', '?')}")
        (stored if outcome[2] is None else failed).append(outcome)
        if outcome[3]:
            warnings.append(outcome[3])
    response = Dataset()
    if stored:
        response.ReferencedSOPSequence = [sop(c, i) for c, i, _, _ in stored]
    if failed:
        response.FailedSOPSequence = [sop(c, i, FailureReason=code) for c, i, code, _ in failed]
    status = "200 OK" if not failed else "202 Accepted" if stored else "409 Conflict"
    headers = [wsgi.warning(w) for w in warnings]
    return status, [("Content-Type", answer_as.media), *headers], json.dumps(response.to_json_dict()).encode()


def take(intake, payload: bytes, study: str | None, source: str) -> tuple[str, str, int | None, str | None]:
    """(SOP Class UID, SOP Instance UID, failure reason or None, warning text or None) of one part."""
    from pydicom import dcmread

    try:
        ds = dcmread(io.BytesIO(payload))
    except Exception as e:  # noqa: BLE001 — any unreadable part is that part's failure, not the request's
        return "", "", FAILURE_UNREADABLE, f"unreadable part: {type(e).__name__}: {e}"
    ref = (str(getattr(ds, "SOPClassUID", "")), str(getattr(ds, "SOPInstanceUID", "")))
    if study and str(getattr(ds, "StudyInstanceUID", "")) != study:
        return (*ref, FAILURE_STUDY_MISMATCH, f"{ref[1]}: not of study {study}")
    outcome = intake.store(ds, source)
    return (*ref, None, None) if outcome.stored else (*ref, outcome.status, f"{ref[1]}: {outcome.reason}")


def sop(sop_class: str, instance: str, **extra):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class or "", instance or ""
    for keyword, value in extra.items():
        setattr(item, keyword, value)
    return item


def error(status: str, message: str) -> tuple[str, list, bytes]:
    return status, [("Content-Type", "application/json")], json.dumps({"error": message}).encode()
