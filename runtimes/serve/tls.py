"""The node's TLS server context, for DICOM (pynetdicom) and HTTPS (cheroot) alike: the certificate and key, and
for DICOM with ``--tls-ca`` client certificates that CA signed — that CA only, not the system's store (a client
certificate from any public CA must not open the node).

Both servers perform the handshake through the context's ``wrap_socket``, where a refused peer (no or an
untrusted certificate, plain text on the TLS port, a protocol mismatch) raises; the context reports each refusal
before re-raising, so the audit trail records it (Security Alert, Node Authentication, PS3.15 A.5.3.11) though
neither server tells the application."""
from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path


class AuditedContext(ssl.SSLContext):
    """An SSLContext whose server-side handshakes report their failures to ``on_refused(peer, reason)``."""

    on_refused: Callable[[str, str], None] | None = None

    def wrap_socket(self, sock, *args, **kwargs):
        try:
            peer = sock.getpeername()[0]
        except OSError:
            peer = "unknown"
        try:
            return super().wrap_socket(sock, *args, **kwargs)
        except (ssl.SSLError, OSError) as e:
            if self.on_refused is not None and kwargs.get("server_side"):
                self.on_refused(peer, f"TLS handshake refused: {getattr(e, 'reason', None) or e}")
            raise


def server_context(cert: Path, key: Path, ca: Path | None = None,
                   on_refused: Callable[[str, str], None] | None = None) -> AuditedContext:
    """A TLS server context (TLS 1.2 or later); with ``ca``, clients must present a certificate it signed."""
    context = AuditedContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    context.on_refused = on_refused
    return context
