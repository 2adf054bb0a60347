"""What happens to an instance a sender delivers, whichever the transport (C-STORE or STOW-RS): checked,
written atomically into the spool and recorded in the ledger *before* success is returned, or refused with a
DICOM status and the reason, the refused file kept in ``rejected/`` with a ``.txt`` saying why.

- An image the engine can read is queued for classification.
- An object of a non-image SOP class (a dose SR, a presentation state, a key-object selection sent with the study)
  is kept and recorded as not applicable: not classified, not a failure a modality would show. An image without
  pixel data is refused.
- A repeated SOP Instance UID with the same pixels (a sender's retry) is acknowledged and changes nothing; with
  other pixels it is refused with a failure of the "Cannot understand" range (C002H, PS3.4 Table B.2-1) and never
  overwrites the first. (PS3.7's Duplicate SOP Instance, 0111H, is not among the C-STORE statuses of PS3.7 9.1.1
  and PS3.4 B.2.3 — DCMTK shows it as "Unknown Status".)
- The same UID and pixels with other demographics (patient or study attributes: a correction at the modality,
  as IHE's Patient Information Reconciliation makes them without new UIDs) is acknowledged, replaces the held
  header, and the result gets a corrected SR: a new SR instance that names the one it corrects in its
  Predecessor Documents Sequence (PS3.3 C.17.2.3), delivered to every destination; logged as a correction.
- An image that cannot be decoded or used gets 0xC000 (Cannot understand, PS3.4 B.2.3) with the reason.
- A write that fails for lack of disk space gets 0xA700 (Refused: Out of resources) and closes the door until
  space is back (:mod:`.housekeeping`); so does a node that is stopping."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import atomic_path, write_bytes
from .disk import is_disk_full
from .records import Listing, State, status_meaning
from .sr import demographics

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # a DICOM UID: digits and dots, never a path
SUCCESS = 0x0000
FAILURE_DUPLICATE = 0xC002  # Cannot understand (PS3.4 B.2.3): the UID is held with other pixel data
FAILURE_CANNOT_USE = 0xC000  # Cannot understand (PS3.4 B.2.3)
REFUSED_OUT_OF_RESOURCES = 0xA700  # Refused: Out of resources (PS3.4 B.2.3)
REFUSED_SOP_CLASS = 0x0122  # Refused: SOP Class not supported (PS3.7 C.5.9)
FAILURE_NOT_ACCEPTED = 0xC001  # Cannot understand: refused by the node's input rules (modality, body part)
# Every status the intake returns, for the conformance statement: (meaning, when).
STATUSES = {
    SUCCESS: ("Success", "the instance is written and recorded (queued for classification, recorded as not applicable "
                         "for a non-image SOP class, or already held with the same pixels)"),
    FAILURE_DUPLICATE: ("Cannot understand (PS3.4 B.2.3): UID held with other pixels", "the SOP Instance UID is held "
                        "with other pixel data; the new file is kept in rejected/ (PS3.7's 0111H is no C-STORE status; "
                        "the same pixels with corrected patient or study attributes are a correction: Success, and a "
                        "corrected result SR)"),
    FAILURE_CANNOT_USE: ("Cannot understand (PS3.4 B.2.3)", "an invalid UID, an image without pixel data, multi-frame, "
                                                            "colour, or pixel data that cannot be decoded; kept in "
                                                            "rejected/ with the reason"),
    REFUSED_OUT_OF_RESOURCES: ("Refused: Out of resources (PS3.4 B.2.3)", "free space on the spool's disk is under "
                                                                          "--min-free (default 1 GB), or a write "
                                                                          "found the disk full, or the node is "
                                                                          "stopping; nothing is kept: send it again "
                                                                          "later"),
    REFUSED_SOP_CLASS: ("Refused: SOP Class not supported (PS3.7 C.5.9)", "the SOP class is not in --accept-sop-class"),
    FAILURE_NOT_ACCEPTED: ("Cannot understand: not accepted", "the Modality or Body Part Examined is not among "
                                                               "--accept-modality / --accept-body-part (defaults: the "
                                                               "engine's manifest); kept in rejected/ with the rule"),
}



@dataclass(frozen=True)
class Outcome:
    status: int  # the DICOM status a C-STORE returns; STOW-RS maps it to its response
    reason: str | None = None  # why, for a refusal or a not-applicable instance
    uid: str = ""

    @property
    def stored(self) -> bool:
        return self.status == SUCCESS


def is_image_class(ds) -> bool:
    """Whether the instance's SOP class is an image storage class (its name, as pydicom's UID dictionary gives
    it, says so: "CT Image Storage", "Secondary Capture Image Storage", ...)."""
    from pydicom.uid import UID

    return "Image" in UID(str(getattr(ds, "SOPClassUID", ""))).name


def not_an_image(ds) -> str:
    from pydicom.uid import UID

    sop = UID(str(getattr(ds, "SOPClassUID", "")))
    return f"not an image ({sop.name or sop or 'no SOP class'}): nothing to classify"


class Intake:
    def __init__(self, node: Node):
        self.node = node

    def store(self, ds, source: str) -> Outcome:
        """Check, write, record ``ds`` (with its file meta) from ``source`` (``AE@address`` or an HTTP caller)."""
        uid = str(getattr(ds, "SOPInstanceUID", ""))
        if not self.node.gate.enter():
            outcome = Outcome(REFUSED_OUT_OF_RESOURCES, "the node is stopping: send it again later", uid)
        else:
            try:
                outcome = self.take(ds, source)
            except Exception as e:
                if not is_disk_full(e):
                    raise
                self.node.metrics.rejected.inc()
                outcome = Outcome(REFUSED_OUT_OF_RESOURCES, self.node.full(f"the disk is full ({e})"), uid)
            finally:
                self.node.gate.leave()
        study, sop = str(getattr(ds, "StudyInstanceUID", "")), str(getattr(ds, "SOPClassUID", ""))
        if self.node.audit is not None:
            self.node.audit.received(source, study, sop, outcome.uid, str(getattr(ds, "PatientID", "")),
                                     refused=None if outcome.stored else outcome.reason)
        extra = {"event": "received" if outcome.stored else "refused", "uid": outcome.uid, "calling": source,
                 "status": f"0x{outcome.status:04X}"}
        if outcome.stored:
            log.info("stored" + (f"; {outcome.reason}" if outcome.reason else ""), extra=extra)
        elif outcome.status == REFUSED_OUT_OF_RESOURCES:
            log.warning("refused (%s): %s", status_meaning(outcome.status), outcome.reason, extra=extra)
        else:
            log.warning("refused: %s", outcome.reason, extra=extra)
        return outcome

    def take(self, ds, source: str) -> Outcome:
        from ..images import ImageError

        uid = str(getattr(ds, "SOPInstanceUID", ""))
        if full := self.node.out_of_space():  # refused at the door: nothing is written, not even to rejected/
            self.node.metrics.rejected.inc()
            return Outcome(REFUSED_OUT_OF_RESOURCES, full, uid)
        if not UID.match(uid) or len(uid) > 64:
            return self.reject(ds, f"invalid SOP Instance UID {uid[:70]!r}", None)
        if refusal := self.rules(ds):
            return self.reject(ds, refusal[1], None, refusal[0])
        folder = self.node.opts.spool / "instances"
        fd, tmp = tempfile.mkstemp(prefix=f".{uid}.", suffix=".partial", dir=folder)
        os.close(fd)
        try:
            ds.save_as(tmp, enforce_file_format=True)
            reason = None if "PixelData" in ds or is_image_class(ds) else not_an_image(ds)
            if reason is None:
                try:
                    content = self.content(Path(tmp))
                except ImageError as e:
                    return self.reject(ds, str(e), Path(tmp))
            else:  # nothing to classify: kept and recorded, not refused
                content = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            return self.record(ds, uid, Path(tmp), folder / f"{uid}.dcm", source, content, reason, demographics(ds))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def record(self, ds, uid: str, tmp: Path, target: Path, source: str, content: str, reason: str | None,
               header: str) -> Outcome:
        """Move the written file into place and add its ledger row, unless the UID is held already."""
        study = str(getattr(ds, "StudyInstanceUID", "")) or None
        with self.node.store_lock:
            held = self.node.ledger.instance(uid)
            if held is None:
                os.replace(tmp, target)
                self.node.ledger.add(uid, target, source, content, not_applicable=reason, study=study, header=header,
                                     listing=Listing.of(ds))
                self.node.metrics.received.inc()
            elif (held.content or self.content_of(Path(held.path))) != content:
                # Never overwrite: the first image keeps its file and result, the second is kept in rejected/.
                return self.reject(ds, "SOP Instance UID already received with other pixel data; send the new image "
                                       "under a new UID", tmp, FAILURE_DUPLICATE)
            elif (held.header or header_of(Path(held.path))) not in (header, None):
                what = changed(Path(held.path), ds)
                os.replace(tmp, target)  # the corrected header is the source of the corrected SR
                was = self.node.ledger.correct(uid, header, study, source, Listing.of(ds))
                log.warning("demographics corrected under the same SOP Instance UID and pixels (%s changed): %s", what,
                            f"a corrected result SR will supersede {held.report}" if was is State.DONE else
                            "the result SR will carry them", extra={"event": "corrected", "uid": uid, "calling": source})
            # else: a resend of what is held (a sender's retry): acknowledged, nothing changes
        if reason is None:
            self.node.notify_arrival()
        return Outcome(SUCCESS, reason, uid)

    def rules(self, ds) -> tuple[int, str] | None:
        """(status, reason) where the node's input rules refuse this instance, else None."""
        opts = self.node.opts

        def limited(rule: tuple[str, ...]) -> bool:
            return bool(rule) and "*" not in rule  # "*": any

        sop = str(getattr(ds, "SOPClassUID", ""))
        if limited(opts.accept_sop_class) and sop not in opts.accept_sop_class:
            return REFUSED_SOP_CLASS, f"SOP class {sop} is not accepted here (--accept-sop-class)"
        modality = str(getattr(ds, "Modality", ""))
        if limited(opts.accept_modality) and is_image_class(ds) and modality not in opts.accept_modality:
            return FAILURE_NOT_ACCEPTED, (f"modality {modality or '(none)'} is not accepted here: this engine takes "
                                          f"{', '.join(opts.accept_modality)} (--accept-modality)")
        body = str(getattr(ds, "BodyPartExamined", "")).upper()
        parts = {b.upper() for b in opts.accept_body_part}
        if limited(opts.accept_body_part) and body and is_image_class(ds) and body not in parts:
            return FAILURE_NOT_ACCEPTED, (f"body part {body} is not accepted here: this engine takes "
                                          f"{', '.join(opts.accept_body_part)} (--accept-body-part)")
        return None

    def content(self, path: Path) -> str:
        """Decode with the reader ``classify`` uses (what passes here can be classified); the sha256 of the
        decoded pixels, which tells a sender's retry from another image under the same UID, whatever its
        transfer syntax."""
        from ..dicom import read_dicom

        pixels = read_dicom(path)
        return hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()

    def content_of(self, path: Path) -> str | None:
        from ..images import ImageError

        try:
            return self.content(path)
        except (ImageError, OSError):
            return None

    def reject(self, ds, reason: str, written: Path | None, code: int = FAILURE_CANNOT_USE) -> Outcome:
        """Keep what was refused in ``rejected/`` with the reason beside it; the outcome to send back."""
        uid = str(getattr(ds, "SOPInstanceUID", ""))
        name = re.sub(r"[^0-9.]", "_", uid or "unknown")[:64] or "unknown"
        keep = self.node.opts.spool / "rejected" / f"{name}.{int(time.time() * 1e6)}.dcm"
        with atomic_path(keep) as tmp:  # a reader (GET /v1/results/UID, spool status) never sees half a file
            if written is not None:
                shutil.copyfile(written, tmp)
            else:
                ds.save_as(tmp, enforce_file_format=False)
        write_bytes(keep.with_suffix(".txt"), (reason + "\n").encode())
        self.node.metrics.rejected.inc()
        return Outcome(code, reason, uid)


def changed(before: Path, ds) -> str:
    """Which copied attributes a correction changed (names only: the log carries no patient data)."""
    from pydicom import dcmread

    from .sr import DEMOGRAPHICS

    if not before.is_file():
        return "patient or study attributes"
    old = dcmread(before, stop_before_pixels=True)
    return ", ".join(k for k in DEMOGRAPHICS if str(old.get(k, "")) != str(ds.get(k, ""))) or "attributes"


def header_of(path: Path) -> str | None:
    """The demographics digest of a held file an earlier version recorded none for (None: it is gone)."""
    from pydicom import dcmread

    try:
        return demographics(dcmread(path, stop_before_pixels=True))
    except (OSError, ValueError):
        return None
