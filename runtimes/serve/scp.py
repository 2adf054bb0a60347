"""The node's DICOM side: a C-STORE/C-ECHO SCP (``pynetdicom``) for the storage classes a scanner sends.
Each instance is decoded with the reader ``classify`` uses, written atomically into the spool and recorded
in the ledger *before* success is returned; one it cannot use gets a failure status with the reason and is
kept in ``rejected/``. Calling AE titles outside ``allow_ae`` are refused at association."""
from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # a DICOM UID: digits and dots, never a path
MAX_ASSOCIATIONS = 64
FAILURE_CANNOT_USE = 0xC000  # "Cannot understand" class of C-STORE failure statuses
FAILURE_DUPLICATE = 0x0111  # "Duplicate SOP Instance" (PS3.7 C.5.8): the UID is held with other pixels


class StorageSCP:
    def __init__(self, node: Node):
        self.node = node

    def on_echo(self, event) -> int:
        return 0x0000

    def on_store(self, event) -> int | object:
        """Decode-check, write atomically, record in the ledger, then acknowledge; otherwise a failure status."""
        import os

        from ..images import ImageError

        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = str(getattr(ds, "SOPInstanceUID", ""))
        source = f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
        if not UID.match(uid) or len(uid) > 64:
            return self.reject(ds, f"invalid SOP Instance UID {uid[:70]!r}", None)
        fd, tmp = tempfile.mkstemp(prefix=f".{uid}.", suffix=".partial", dir=self.node.opts.spool / "instances")
        os.close(fd)
        try:
            ds.save_as(tmp, enforce_file_format=True)
            try:
                content = self.check(Path(tmp))
            except ImageError as e:
                return self.reject(ds, str(e), Path(tmp))
            target = self.node.opts.spool / "instances" / f"{uid}.dcm"
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            with self.node.store_lock:
                held = self.node.ledger.held(uid)
                if held is None:
                    os.replace(tmp, target)
                    self.node.ledger.add(uid, target, source, content)
                    self.node.metrics.received.inc()
                elif (held[1] or self.content_of(Path(held[0]))) != content:
                    # Never overwrite: the first image keeps its file and result, the second is kept in rejected/.
                    return self.reject(ds, "SOP Instance UID already received with other pixel data; send the "
                                            "new image under a new UID", Path(tmp), FAILURE_DUPLICATE)
                # else: a resend of the pixels already held (a sender's retry): acknowledged, nothing changes
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.node.notify_arrival()
        return 0x0000

    def check(self, path: Path) -> str:
        """Decode with the reader ``classify`` uses (what passes here can be classified); the sha256 of the
        decoded pixels, which tells a sender's retry from another image under the same UID."""
        import hashlib

        from ..dicom import read_dicom

        pixels = read_dicom(path)
        return hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()

    def content_of(self, path: Path) -> str | None:
        from ..images import ImageError

        try:
            return self.check(path)
        except (ImageError, OSError):
            return None

    def reject(self, ds, reason: str, written: Path | None, code: int = FAILURE_CANNOT_USE) -> tuple:
        from pydicom.dataset import Dataset

        name = re.sub(r"[^0-9.]", "_", str(getattr(ds, "SOPInstanceUID", "unknown")))[:64] or "unknown"
        keep = self.node.opts.spool / "rejected" / f"{name}.{int(time.time() * 1e6)}.dcm"
        if written is not None:
            keep.write_bytes(Path(written).read_bytes())
        else:
            ds.save_as(keep, enforce_file_format=False)
        keep.with_suffix(".txt").write_text(reason + "\n")
        self.node.metrics.rejected.inc()
        status = Dataset()
        status.Status = code
        status.ErrorComment = reason[:64]
        return status

    def start(self):
        """The association server, listening (non-blocking)."""
        from pynetdicom import AE, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.node.opts.ae_title)
        ae.maximum_associations = MAX_ASSOCIATIONS  # pynetdicom's default (10) refused a 16-sender load test
        ae.supported_contexts = StoragePresentationContexts
        ae.add_supported_context(Verification)
        if self.node.opts.allow_ae:
            ae.require_calling_aet = list(self.node.opts.allow_ae)
        handlers = [(evt.EVT_C_STORE, self.on_store), (evt.EVT_C_ECHO, self.on_echo)]
        return ae.start_server((self.node.opts.host, self.node.opts.dicom_port), block=False, evt_handlers=handlers)
