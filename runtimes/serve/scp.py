"""The node's DICOM side: a C-STORE/C-ECHO SCP (``pynetdicom``) for every storage SOP class, in every transfer
syntax this installation decodes; what happens to an instance is :mod:`.intake`'s.

At association (PS3.8 7.1.1.x, A-ASSOCIATE-RJ rejected-permanent by the service user): a calling AE title outside
``allow_ae`` is refused with "calling AE title not recognized" (reason 3), and a called AE title other than the
node's own with "called AE title not recognized" (reason 7), unless ``any_called_ae``; each refusal is logged
and audited."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .intake import Intake

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("dcube_edge.serve")
MAX_ASSOCIATIONS = 64
# Uncompressed transfer syntaxes, always accepted (PS3.5 A.1-A.3, A.5).
NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")


def kind(uid: str) -> str:
    """uncompressed, lossless or lossy (by the transfer syntax's registered name)."""
    from pydicom.uid import UID

    name = UID(uid).name
    return "uncompressed" if uid in NATIVE else "lossless" if "Lossless" in name and "Lossy" not in name else "lossy"


def transfer_syntaxes() -> list[str]:
    """What the SCP accepts, in its order of preference: the lossless compressed syntaxes pydicom has a working
    decoder for here (the `serve` extra installs pylibjpeg's JPEG, JPEG-LS and JPEG 2000 plugins; RLE is
    pydicom's own), the uncompressed ones, then the lossy ones. Where a sender proposes several syntaxes in one
    presentation context the first of these that it offers is accepted: a compressed file is taken as encoded
    (a sender that cannot decompress it is not asked to), and a lossy syntax only when nothing else is offered."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, AllTransferSyntaxes

    lossless, lossy = [], []
    for uid in map(UID, AllTransferSyntaxes):
        if uid in NATIVE:
            continue
        try:
            available = get_decoder(uid).is_available
        except (NotImplementedError, ValueError, KeyError):
            continue
        if available:
            (lossless if kind(uid) == "lossless" else lossy).append(str(uid))
    return [*lossless, *NATIVE, *lossy]


class StorageSCP:
    def __init__(self, node: Node):
        self.node = node
        self.intake = Intake(node)

    def on_echo(self, event) -> int:
        return 0x0000

    def on_store(self, event):
        """Hand the instance to the intake; its outcome becomes the C-STORE status (with ErrorComment)."""
        from pydicom.dataset import Dataset

        ds = event.dataset
        ds.file_meta = event.file_meta
        outcome = self.intake.store(ds, f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}")
        if outcome.stored:
            return outcome.status
        status = Dataset()
        status.Status = outcome.status
        status.ErrorComment = (outcome.reason or "")[:64]
        return status

    def on_association(self, event) -> None:
        """Accepted, refused, released or aborted: a log line; the first two audited."""
        requestor = event.assoc.requestor
        calling, address = str(requestor.ae_title).strip(), requestor.address
        name = event.event.name
        extra = {"event": name.lower(), "calling": calling, "address": address}
        if name == "EVT_ACCEPTED":
            log.info("association accepted", extra=extra)
            self.node.audit.association(calling, address, accepted=True)
        elif name == "EVT_REJECTED":
            why = self.refusal(calling, str(getattr(requestor.primitive, "called_ae_title", "") or "").strip())
            log.warning("association refused: %s", why, extra=extra)
            self.node.audit.association(calling, address, accepted=False, why=why)
        else:
            log.info("association %s", "released" if name == "EVT_RELEASED" else "aborted", extra=extra)

    def refusal(self, calling: str, called: str) -> str:
        """Why pynetdicom rejected an association (its event does not say): the same checks, in its order."""
        opts = self.node.opts
        if not opts.any_called_ae and called != opts.ae_title:
            return f"called AE title {called!r} not recognized: this node is {opts.ae_title!r} (--ae-title)"
        if opts.allow_ae and calling not in opts.allow_ae:
            return f"calling AE title {calling!r} not recognized (--allow-ae)"
        return f"too many associations (at most {MAX_ASSOCIATIONS})"

    def start(self, ssl_context=None):
        """The association server, listening (non-blocking); over TLS with ``ssl_context``."""
        from pynetdicom import AE, StoragePresentationContexts, build_context, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.node.opts.ae_title)
        ae.maximum_associations = MAX_ASSOCIATIONS  # pynetdicom's default (10) refused a 16-sender load test
        syntaxes = transfer_syntaxes()
        ae.supported_contexts = [build_context(cx.abstract_syntax, syntaxes) for cx in StoragePresentationContexts]
        ae.add_supported_context(Verification)
        if self.node.opts.allow_ae:
            ae.require_calling_aet = list(self.node.opts.allow_ae)
        ae.require_called_aet = not self.node.opts.any_called_ae
        handlers = [(evt.EVT_C_STORE, self.on_store), (evt.EVT_C_ECHO, self.on_echo),
                    *((e, self.on_association) for e in (evt.EVT_ACCEPTED, evt.EVT_REJECTED, evt.EVT_RELEASED,
                                                         evt.EVT_ABORTED))]
        return ae.start_server((self.node.opts.host, self.node.opts.dicom_port), block=False, evt_handlers=handlers,
                               ssl_context=ssl_context)
