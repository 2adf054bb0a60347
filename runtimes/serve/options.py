"""Every setting of `dcube-edge serve`, declared once: its type, default, range, help and whether SIGHUP applies
it. The command line's options (:mod:`dcube_edge.cli.serve`), the TOML keys of ``--config`` (:mod:`.config`) and
the checks are all derived from :class:`ServeOptions`; a value is checked the same way wherever it comes from.
The object is frozen: a reload builds a new one (or keeps the old one and says why). Torch-free."""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcube_edge.errors import UserError

from ..images import MAX_FRAMES

SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*$", re.IGNORECASE)
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Spec:
    """How one setting is given and checked. ``kind``: int, str, bool, path, list (comma-separated strings),
    paths, size (bytes from 5GB), duration (seconds from 72h), choice; ``parse`` turns the given value into
    the typed one (raising UserError naming the option); ``live``: SIGHUP applies a changed value."""

    help: str
    kind: str = "str"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    parse: Callable[[Any, str], Any] | None = None
    live: bool = False
    argument: bool = False  # the command line takes it as a positional argument (the engine)
    shown: str | None = None  # the default as --help shows it, where not the value itself

    def option(self, name: str) -> str:
        return name if self.argument else "--" + name.replace("_", "-")

    def words(self, value: Any) -> str:
        """A value as a person gives it (48h, 1GB), for the log."""
        if self.kind == "duration" and isinstance(value, (int, float)):
            return duration_words(value)
        if self.kind == "size" and isinstance(value, int):
            unit = next(u for u in ("TB", "GB", "MB", "KB", "B") if value % UNITS[u] == 0 or u == "B")
            return f"{value // UNITS[unit]}{unit}"
        return str(value)


def duration_words(seconds: float) -> str:
    """Seconds in the largest unit that holds them whole (172800 → 2d, 5400 → 90m), else in seconds."""
    unit = next((u for u in ("d", "h", "m") if seconds >= SECONDS[u] and seconds % SECONDS[u] == 0), "s")
    return f"{seconds / SECONDS[unit]:g}{unit}"


def setting(default: Any, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help, **spec)})


# -- parsers: the given value (TOML's or the command line's) → the typed value ---------------------------------
def size(value: Any, option: str = "--min-free") -> int:
    """A size with its unit (B, KB, MB, GB, TB; powers of ten) in bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = SIZE.match(str(value))
    if not found:
        raise UserError(f"{option} {value!r}: give a size such as 500MB or 5GB (units B, KB, MB, GB, TB)")
    return int(float(found[1]) * UNITS[(found[2] or "B").upper()])


def duration(value: Any, option: str = "--retry-for") -> float:
    """A duration with its unit (s, m, h, d; seconds without one) in seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    found = DURATION.match(str(value))
    if not found:
        raise UserError(f"{option} {value!r}: give a duration such as 90s, 30m, 72h or 7d")
    return float(found[1]) * SECONDS[found[2].lower()]


def as_list(value: Any) -> tuple[str, ...]:
    """A list setting's items, given as one comma-separated string, a TOML list or a repeated option."""
    items = [value] if isinstance(value, str) else [str(v) for v in value or ()]
    return tuple(v.strip() for item in items for v in item.split(",") if v.strip())


def ae_list(value: Any, option: str = "--allow-ae") -> tuple[str, ...]:
    """Calling AE titles; given but naming none is refused (it would read as "anyone")."""
    titles = as_list(value)
    if not titles:
        raise UserError(f"{option} {value!r} names no AE title: give the calling AE titles to accept, comma-separated")
    for title in titles:
        check_ae_title(title, option)
    return titles


def parse_forward(text: Any, option: str = "--forward") -> tuple[str, str, int]:
    """``AE@HOST:PORT`` of a PACS as (AE title, host, port)."""
    found = re.fullmatch(r"([^@\s]{1,16})@([^:\s]+):(\d{1,5})", str(text))
    if not found or not 0 < int(found.group(3)) < 65536:
        raise UserError(f"{option} {text!r}: expected AE@HOST:PORT, e.g. PACS@10.0.0.5:104")
    check_ae_title(found.group(1), option)
    return found.group(1), found.group(2), int(found.group(3))


def parse_forwards(value: Any, option: str = "--forward") -> tuple[tuple[str, str, int], ...]:
    """Each ``AE@HOST:PORT`` given, once (the same PACS twice would be sent every result twice)."""
    found = tuple(parse_forward(text, option) for text in as_list(value))
    if len(set(found)) < len(found):
        raise UserError(f"{option}: a destination is given twice; give each PACS once")
    return found


def url(text: Any, option: str) -> str:
    if not re.match(r"^https?://[^\s/]+", str(text)):
        raise UserError(f"{option} {text!r}: give the service's base URL, e.g. http://pacs:8042/dicom-web")
    return str(text).rstrip("/")


def viewer(text: Any, option: str = "--viewer-url") -> str:
    if not re.match(r"^https?://[^\s/]+", str(text)) or "{study}" not in str(text):
        raise UserError(f"{option} {text!r}: give the viewer's http(s) address with {{study}} where the Study Instance "
                        "UID goes, e.g. http://ohif:3000/viewer?StudyInstanceUIDs={study}")
    return str(text)


def parse_ae_title(title: Any, option: str = "--ae-title") -> str:
    check_ae_title(str(title), option)
    return str(title)


def check_ae_title(title: str, option: str) -> None:
    """An AE title as PS3.5 6.2 allows it: 1-16 characters of the default repertoire, no backslash."""
    if not title.strip() or len(title) > 16 or not title.isascii() or "\\" in title or not title.isprintable():
        raise UserError(f"{option} {title!r} is not an AE title: 1 to 16 printable ASCII characters, no backslash "
                        "(PS3.5 6.2)")


@dataclass(frozen=True)
class ServeOptions:
    """Every setting of `dcube-edge serve`; the CLI and the config file fill it, the node reads nothing else."""

    engine: Path | None = setting(None, "Engine directory to classify with (or `engine` in --config).", kind="path",
                                  argument=True)
    spool: Path | None = setting(None, "Folder for received instances, rejected ones, result SRs, the ledger and the "
                                       "audit log (its parent must exist; one node per spool).", kind="path")
    host: str = setting("127.0.0.1", "Address to bind (non-loopback needs --token-file and --allow-ae; use TLS).")
    dicom_port: int = setting(11112, "DICOM (C-STORE/C-ECHO) port.", kind="int", low=1, high=65535)
    http_port: int = setting(8080, "HTTP port (results, DICOMweb, /healthz, /readyz, /metrics).", kind="int", low=1,
                             high=65535)
    ae_title: str = setting("DCUBE", "This node's AE title.", parse=parse_ae_title)
    allow_ae: tuple[str, ...] = setting((), "Comma-separated calling AE titles to accept (an empty list is refused, "
                                            "not read as anyone).", kind="list", parse=ae_list, shown="any")
    any_called_ae: bool = setting(False, "Accept associations addressed to any called AE title (default: only "
                                         "--ae-title; others are rejected, PS3.8 reason 7).", kind="bool")
    token_file: Path | None = setting(None, "File holding the HTTP bearer token (16+ characters).", kind="path")
    tls_cert: Path | None = setting(None, "PEM certificate: DICOM TLS and HTTPS (with --tls-key).", kind="path")
    tls_key: Path | None = setting(None, "PEM private key of --tls-cert.", kind="path")
    tls_ca: Path | None = setting(None, "PEM CA bundle: DICOM clients must present a certificate it signed.",
                                  kind="path")
    max_batch: int = setting(16, "Largest batch the batcher forms.", kind="int", low=1, high=4096)
    max_delay_ms: int = setting(50, "Longest wait for a batch to fill, in ms.", kind="int", low=0, high=60_000)
    workers: int = setting(1, "Threads decoding each batch's files.", kind="int", low=1, high=256)
    max_frames: int = setting(MAX_FRAMES, "Refuse a DICOM object with more frames than this (C-STORE 0xC003; each "
                                          "frame is classified).", kind="int", low=1)
    forward: tuple[tuple[str, str, int], ...] = setting((), "AE@HOST:PORT of a PACS: each result goes there as a "
                                                             "DICOM SR by C-STORE (several: repeat the option or "
                                                             "separate with commas).", kind="list",
                                                        parse=parse_forwards)
    forward_stow: str | None = setting(None, "Base URL of a DICOMweb service (e.g. http://pacs:8042/dicom-web): each "
                                             "result goes there by STOW-RS.", parse=url)
    retry_for: float = setting(72 * 3600.0, "How long a destination that does not answer is retried before its "
                                            "results are dead-lettered (they are re-queued when it answers again), "
                                            "e.g. 72h, 30m; a refusal dead-letters at once.", kind="duration",
                               parse=duration, low=1, high=366 * 86400, live=True, shown="72h")
    accept_modality: tuple[str, ...] = setting((), "Comma-separated Modality values to accept, e.g. US,MG; * for any; "
                                                   "others are refused with the rule named.", kind="list",
                                                shown="what export --modality recorded, else any")
    accept_sop_class: tuple[str, ...] = setting((), "Comma-separated SOP Class UIDs to accept.", kind="list",
                                                shown="any")
    accept_body_part: tuple[str, ...] = setting((), "Comma-separated Body Part Examined values to accept where an "
                                                    "instance gives one.", kind="list", shown="any")
    min_free: int = setting(10**9, "Refuse new instances (C-STORE 0xA700, HTTP 507) while the spool's disk has less "
                                   "free space, e.g. 5GB (B/KB/MB/GB/TB; 0 turns the watermark off).", kind="size",
                            parse=size, low=0, live=True, shown="1GB")
    keep_days: int | None = setting(None, "Delete the pixel files of instances whose result SR is kept after this "
                                          "many days (the SRs and ledger rows stay).", kind="int", low=1,
                                    high=36_500, live=True)
    log_format: str = setting("text", "text | json (one JSON object per line, for log shippers).", kind="choice",
                              choices=("text", "json"))
    audit_log: str | None = setting(None, "DICOM audit records (PS3.15 A.5, RFC 5424): a file, or udp://HOST:PORT of "
                                          "a syslog collector.", shown="SPOOL/audit.log")
    viewer_url: str | None = setting(None, "A viewer's address for a study, {study} standing for its Study Instance "
                                           "UID (e.g. http://ohif:3000/viewer?StudyInstanceUIDs={study}): the console "
                                           "links each result to it.", parse=viewer, live=True)
    reclassify: bool = setting(False, "The spool holds another engine's results: classify everything again and "
                                      "deliver the new results.", kind="bool")
    trusted_key: tuple[Path, ...] = setting((), "Refuse an engine not signed by this public key (repeatable).",
                                            kind="paths")
    shadow: Path | None = setting(None, "Engine directory of a shadow engine: it classifies every instance too, its "
                                        "results are recorded and never delivered (POST /v1/engine/promote makes it "
                                        "active).", kind="path")
    monitor_window: int = setting(250, "Instances in the monitor's rolling window, compared with the engine's "
                                       "reference and the site baseline (docs/monitoring.md).", kind="int", low=50,
                                  high=100_000)
    monitor_baseline: int = setting(200, "The site baseline: the first this many instances classified, whose "
                                         "acquisition metadata mix later windows are compared with.", kind="int",
                                    low=50, high=100_000)
    token: str | None = field(default=None, compare=False, repr=False)  # read from token_file, never given

    def __post_init__(self) -> None:
        """Ranges, then what the node must not start with, refused before anything is created."""
        for f in dataclasses.fields(self):
            if "spec" in f.metadata:
                check(f.metadata["spec"], getattr(self, f.name), f.metadata["spec"].option(f.name))
        check_ae_title(self.ae_title, "--ae-title")
        if self.token_file is not None and self.token is None:
            object.__setattr__(self, "token", read_token(self.token_file))
        if not is_loopback(self.host) and not (self.token and self.allow_ae):
            raise UserError(f"--host {self.host} is reachable from the network: also pass --token-file (HTTP) and "
                            "--allow-ae with at least one calling AE title (DICOM)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UserError("--tls-cert and --tls-key go together: give both, or neither")
        if self.tls_ca is not None and self.tls_cert is None:
            raise UserError("--tls-ca verifies DICOM clients over TLS: also give --tls-cert and --tls-key")
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

    def changes(self, fresh: ServeOptions) -> tuple[dict[str, Any], list[str]]:
        """What a reload to ``fresh`` changes: ({live setting: new value}, [settings that need a restart])."""
        live, restart = {}, []
        for f in dataclasses.fields(self):
            spec = f.metadata.get("spec")
            if spec is None or getattr(self, f.name) == getattr(fresh, f.name):
                continue
            if spec.live:
                live[f.name] = getattr(fresh, f.name)
            elif f.name != "accept_modality" or fresh.accept_modality:  # empty: the engine's, as at the start
                restart.append(f.name)
        return live, restart


def specs() -> dict[str, tuple[Spec, Any]]:
    """Every setting: name → (spec, default)."""
    return {f.name: (f.metadata["spec"], f.default) for f in dataclasses.fields(ServeOptions) if "spec" in f.metadata}


def build(*sources: tuple[str, dict[str, Any]]) -> ServeOptions:
    """The settings from given values, each source as (where, {name: value}) — the config file's, then the
    command line's, which wins (None: not given): each value checked and parsed by its spec, named as its source
    names it (a file's key, the command line's option), then all of them checked together."""
    table = specs()
    values: dict[str, Any] = {}
    for where, given in sources:
        for name, value in given.items():
            if value is None:
                continue
            spec, _ = table[name]
            try:
                values[name] = typed(spec, value, name if where else spec.option(name))
            except UserError as e:
                raise UserError(f"{where}{e}") from None
    return ServeOptions(**values)


def check(spec: Spec, value: Any, option: str) -> None:
    """A typed value against its spec's range and choices."""
    if value is not None and spec.low is not None and not spec.low <= value <= (spec.high if spec.high is not None
                                                                                else value):
        high = f"..{spec.high:g}" if spec.high is not None else " or more"
        raise UserError(f"{option} {value:g}: must lie in {spec.low:g}{high}")
    if spec.choices and value not in spec.choices:
        raise UserError(f"{option} {value!r}: choose {' or '.join(spec.choices)}")


def typed(spec: Spec, value: Any, option: str) -> Any:
    """One given value as its setting's type (a parser reads the value as given, for its messages)."""
    if spec.kind in ("list", "paths"):
        if not isinstance(value, str) and not (isinstance(value, (list, tuple)) and
                                               all(isinstance(v, (str, Path)) for v in value)):
            raise UserError(f"{option} {value!r}: give a list of strings, or one comma-separated string")
        if not spec.parse:
            value = tuple(map(Path, as_list(value))) if spec.kind == "paths" else as_list(value)
    elif spec.kind == "path":
        if not isinstance(value, (str, Path)):
            raise UserError(f"{option} {value!r}: give a path")
        value = Path(value)
    elif spec.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{option} {value!r}: give a whole number")
    elif spec.kind == "bool" and not isinstance(value, bool):
        raise UserError(f"{option} {value!r}: give true or false")
    elif spec.kind in ("str", "choice") and not isinstance(value, str):
        raise UserError(f"{option} {value!r}: give a string")
    value = spec.parse(value, option) if spec.parse else value
    check(spec, value, option)
    return value


def preflight(opts: ServeOptions) -> None:
    """Every check that needs the machine, before anything is created or printed as serving: the spool's parent
    exists (a missing mount would otherwise spool onto the root disk), both ports can be bound as the servers
    bind them (SO_REUSEADDR: a connection of the previous run in TIME-WAIT does not hold the port), the TLS files
    read."""
    import socket
    import ssl

    if opts.engine is None or opts.spool is None:
        missing = " and ".join(n for n, v in (("the engine directory", opts.engine), ("--spool", opts.spool)) if not v)
        raise UserError(f"give {missing} (on the command line, or as engine / spool in --config)")
    parent = opts.spool.resolve().parent
    if not parent.is_dir():
        raise UserError(f"--spool {opts.spool}: its folder {parent} does not exist (is a share unmounted?); create it "
                        "first — the node does not create parents")
    for option, port in (("--dicom-port", opts.dicom_port), ("--http-port", opts.http_port)):
        with socket.socket(socket.AF_INET6 if ":" in opts.host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as pynetdicom's and cheroot's servers do
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
