"""The node's TLS server context, for DICOM (pynetdicom) and HTTPS (cheroot) alike: the certificate and key, and
for DICOM with ``--tls-ca`` client certificates that CA signed — that CA only, not the system's store (a client
certificate from any public CA must not open the node).

Both servers perform the handshake through the context's ``wrap_socket``, where a refused peer (no or an
untrusted certificate, plain text on the TLS port, a protocol mismatch) raises; the context reports each refusal
before re-raising, so the audit trail records it (Security Alert, Node Authentication, PS3.15 A.5.3.11) though
neither server tells the application.

Both servers also run that handshake in their one accepting thread (pynetdicom's ``get_request``, cheroot's
connection manager), so a peer that connects and sends nothing held every other TLS client off: for ever on the
DICOM port (its accepted sockets have no timeout), for cheroot's timeout per such peer on HTTPS. The handshake is
bounded here to :data:`HANDSHAKE_S`; the socket's own timeout is restored after it."""
from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

HANDSHAKE_S = 5  # longest a TLS handshake may take (it holds the server's accepting thread)


class AuditedContext(ssl.SSLContext):
    """An SSLContext whose server-side handshakes are bounded in time and report their failures to
    ``on_refused(peer, reason)``."""

    on_refused: Callable[[str, str], None] | None = None

    def wrap_socket(self, sock, *args, **kwargs):
        if not kwargs.get("server_side"):
            return super().wrap_socket(sock, *args, **kwargs)
        try:
            peer = sock.getpeername()[0]
        except OSError:
            peer = "unknown"
        previous = sock.gettimeout()
        sock.settimeout(HANDSHAKE_S if previous is None else min(previous, HANDSHAKE_S))
        try:
            wrapped = super().wrap_socket(sock, *args, **kwargs)
        except (ssl.SSLError, OSError) as e:
            if self.on_refused is not None:
                self.on_refused(peer, f"TLS handshake refused: {getattr(e, 'reason', None) or e}")
            raise
        wrapped.settimeout(previous)
        return wrapped


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
