"""What a DICOM node is started with, checked before anything is created (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dcube_edge.errors import UserError


@dataclass
class ServeOptions:
    """Every setting of `dcube-edge serve`; the CLI fills it, the service reads nothing else."""

    spool: Path
    host: str = "127.0.0.1"
    dicom_port: int = 11112
    http_port: int = 8080
    ae_title: str = "DCUBE"
    allow_ae: tuple[str, ...] = ()
    any_called_ae: bool = False  # accept associations addressed to any called AE title, not only ae_title
    token: str | None = None
    max_batch: int = 16
    max_delay_ms: int = 50
    workers: int = 1  # threads decoding a batch's files
    reclassify: bool = False
    forward: tuple[str, str, int] | None = None  # (AE title, host, port) of the PACS that receives the SRs
    forward_stow: str | None = None  # a DICOMweb service's base URL that receives the SRs by STOW-RS
    max_attempts: int = 20  # deliveries of one result to one destination before it is dead-lettered
    tls_cert: Path | None = None  # PEM server certificate: DICOM TLS and HTTPS
    tls_key: Path | None = None  # its PEM private key
    tls_ca: Path | None = None  # PEM CA bundle: DICOM clients must present a certificate it signed
    accept_modality: tuple[str, ...] = ()  # Modality values accepted (empty: any)
    accept_sop_class: tuple[str, ...] = ()  # SOP Class UIDs accepted (empty: any)
    accept_body_part: tuple[str, ...] = ()  # Body Part Examined values accepted, where an instance has one
    min_free: int = 0  # bytes: below this free space on the spool's disk, new instances are refused
    keep_days: int | None = None  # pixel files of delivered (or not applicable) instances older than this go
    log_format: str = "text"  # or "json": one JSON object per line
    audit_log: str | None = None  # audit record file or udp://HOST:PORT; default spool/audit.log

    def __post_init__(self) -> None:
        """What the node must not start with, refused before anything is created."""
        for option, title in [("--ae-title", self.ae_title), *(("--allow-ae", a) for a in self.allow_ae),
                              *([("--forward", self.forward[0])] if self.forward else [])]:
            check_ae_title(title, option)
        if not is_loopback(self.host) and not (self.token and self.allow_ae):
            raise UserError(f"--host {self.host} is reachable from the network: also pass --token-file (HTTP) and "
                             "--allow-ae with at least one calling AE title (DICOM)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UserError("--tls-cert and --tls-key go together: give both, or neither")
        if self.tls_ca is not None and self.tls_cert is None:
            raise UserError("--tls-ca verifies DICOM clients over TLS: also give --tls-cert and --tls-key")
        if self.log_format not in ("text", "json"):
            raise UserError(f"--log-format {self.log_format!r}: choose text or json")
        if self.keep_days is not None and self.keep_days < 1:
            raise UserError(f"--keep-days {self.keep_days}: give at least 1 day")
        if self.dicom_port == self.http_port:
            raise UserError(f"--dicom-port and --http-port are both {self.dicom_port}: give them different ports")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def reachable(self) -> bool:
        """Bound to an address other machines can reach."""
        return not is_loopback(self.host)

    def audit_target(self) -> str:
        return self.audit_log or str(self.spool / "audit.log")


def preflight(opts: ServeOptions) -> None:
    """Every check that needs the machine, before anything is created or printed as serving: the spool's parent
    exists (a missing mount would otherwise spool onto the root disk), both ports are free, the TLS files read."""
    import socket
    import ssl

    parent = opts.spool.resolve().parent
    if not parent.is_dir():
        raise UserError(f"--spool {opts.spool}: its folder {parent} does not exist (is a share unmounted?); create it "
                        "first — the node does not create parents")
    for option, port in (("--dicom-port", opts.dicom_port), ("--http-port", opts.http_port)):
        with socket.socket(socket.AF_INET6 if ":" in opts.host else socket.AF_INET) as s:
            try:
                s.bind((opts.host, port))
            except OSError as e:
                raise UserError(f"{option} {port} on {opts.host} cannot be used ({e.strerror or e}): another "
                                "program holds it, or the address is not this machine's") from None
    if opts.tls:
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(opts.tls_cert, opts.tls_key)
            if opts.tls_ca:
                context.load_verify_locations(opts.tls_ca)
        except (OSError, ssl.SSLError) as e:
            raise UserError(f"--tls-cert/--tls-key/--tls-ca: {getattr(e, 'strerror', None) or e}") from None


def parse_list(text: str | None, option: str) -> tuple[str, ...]:
    """A comma-separated list option (None: not given)."""
    return tuple(v.strip() for v in text.split(",") if v.strip()) if text else ()


def check_ae_title(title: str, option: str) -> None:
    """An AE title as PS3.5 6.2 allows it: 1-16 characters of the default repertoire, no backslash."""
    if not title.strip() or len(title) > 16 or not title.isascii() or "\\" in title or not title.isprintable():
        raise UserError(f"{option} {title!r} is not an AE title: 1 to 16 printable ASCII characters, no backslash "
                         "(PS3.5 6.2)")


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise UserError(f"--host {host!r} is not an IP address") from None


def read_token(path: Path) -> str:
    """The HTTP bearer token from ``--token-file`` (at least 16 characters)."""
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise UserError(f"--token-file {path}: {e.strerror or e}") from None
    if len(token) < 16:
        raise UserError(f"--token-file {path}: the token must be at least 16 characters")
    return token


def parse_forward(text: str) -> tuple[str, str, int]:
    """``AE@HOST:PORT`` of a PACS as (AE title, host, port)."""
    import re

    found = re.fullmatch(r"([^@\s]{1,16})@([^:\s]+):(\d{1,5})", text)
    if not found or not 0 < int(found.group(3)) < 65536:
        raise UserError(f"--forward {text!r}: expected AE@HOST:PORT, e.g. PACS@10.0.0.5:104")
    return found.group(1), found.group(2), int(found.group(3))


def parse_ae_list(text: str | None) -> tuple[str, ...]:
    """``--allow-ae``: comma-separated calling AE titles; given but naming none is refused (it would read as
    "anyone")."""
    if text is None:
        return ()
    titles = tuple(a.strip() for a in text.split(",") if a.strip())
    if not titles:
        raise UserError(f"--allow-ae {text!r} names no AE title: give the calling AE titles to accept, comma-separated")
    return titles
