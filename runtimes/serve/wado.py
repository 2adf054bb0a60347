"""WADO-RS (PS3.18 10.4) over the node's results: a study, a series or an instance as ``multipart/related;
type="application/dicom"`` (in the transfer syntax the result is stored in: Explicit VR Little Endian), and its
metadata (``…/metadata``) as ``application/dicom+json`` (PS3.18 F.2; a result SR has no bulk data). Anything else
the client asks for (``Accept: text/html``, ``application/dicom+json`` on an instance resource, another transfer
syntax, XML metadata) is 406 Not Acceptable naming what the resource is available as (PS3.18 8.7)."""
from __future__ import annotations

import io
import json
import uuid

from .negotiation import Offer, choose, describe

DICOM = "application/dicom"
JSON_OFFERS = [Offer("application/dicom+json"), Offer("application/json")]


def instance_offers(datasets: list) -> list[Offer]:
    syntaxes = {str(ds.file_meta.TransferSyntaxUID) for ds in datasets if "TransferSyntaxUID" in ds.file_meta}
    syntax = syntaxes.pop() if len(syntaxes) == 1 else "1.2.840.10008.1.2.1"
    return [Offer("multipart/related", {"type": DICOM, "transfer-syntax": syntax})]


def retrieve(datasets: list, accept: str | None) -> tuple[str, list, bytes]:
    """The instances as multipart/related DICOM parts, or 406."""
    offers = instance_offers(datasets)
    chosen = choose(accept, offers, default_type=DICOM)
    if chosen is None:
        return not_acceptable(accept, offers)
    boundary = uuid.uuid4().hex
    parts = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        header = f"--{boundary}\r\nContent-Type: {DICOM}; transfer-syntax={ds.file_meta.TransferSyntaxUID}\r\n\r\n"
        parts.append(header.encode() + buffer.getvalue() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return "200 OK", [("Content-Type", f"{chosen.header()}; boundary={boundary}")], body


def metadata(datasets: list, accept: str | None) -> tuple[str, list, bytes]:
    """The instances' attributes as a DICOM JSON array, or 406."""
    chosen = choose(accept, JSON_OFFERS)
    if chosen is None:
        return not_acceptable(accept, JSON_OFFERS)
    body = json.dumps([ds.to_json_dict() for ds in datasets]).encode()
    return "200 OK", [("Content-Type", chosen.media)], body


def not_acceptable(accept: str | None, offers: list[Offer]) -> tuple[str, list, bytes]:
    message = {"error": f"cannot answer in {accept!r}; this resource is available as: {describe(offers)}"}
    return "406 Not Acceptable", [("Content-Type", "application/json")], json.dumps(message).encode()
