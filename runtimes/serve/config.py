"""`serve --config FILE`: one TOML file holding every option (deploy/serve.toml is an example). A key is an
option's name with dashes as underscores; an option given on the command line overrides the file; an unknown
key or a value of the wrong type stops the start with exit 2, naming the key."""
from __future__ import annotations

import re
from pathlib import Path

from dcube_edge.errors import UserError

from .options import ServeOptions, parse_ae_list, parse_forward, read_token

# Every key the file may hold, with the type its value must have. Lists may also be given as one comma-separated
# string, as on the command line.
KEYS: dict[str, type] = {
    "engine": str, "spool": str, "host": str, "dicom_port": int, "http_port": int, "ae_title": str, "allow_ae": list,
    "token_file": str, "max_batch": int, "max_delay_ms": int, "workers": int, "forward": str, "forward_stow": str,
    "max_attempts": int, "reclassify": bool, "trusted_key": list, "tls_cert": str, "tls_key": str, "tls_ca": str,
    "accept_modality": list, "accept_sop_class": list, "accept_body_part": list, "min_free": str, "keep_days": int,
    "log_format": str, "audit_log": str, "any_called_ae": bool}
RANGES = {"dicom_port": (1, 65535), "http_port": (1, 65535), "max_batch": (1, 4096), "max_delay_ms": (0, 60_000),
          "workers": (1, 256), "max_attempts": (1, 10**6), "keep_days": (1, 36_500)}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*$", re.IGNORECASE)
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def read(path: Path) -> dict:
    """The file's settings, checked: known keys, values of the right type."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise UserError(f"--config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--config {path} is not valid TOML: {e}") from None
    for key, value in data.items():
        want = KEYS.get(key)
        if want is None:
            close = [k for k in KEYS if k.split("_")[0] == key.split("_")[0]]
            raise UserError(f"--config {path}: unknown key {key!r}" + (f" (did you mean {', '.join(close)}?)" if close else
                                                                       f"; keys are {', '.join(KEYS)}"))
        if want is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            data[key] = value
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is list:
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            raise UserError(f"--config {path}: {key} = {value!r} must be {want.__name__}"
                            + (" of strings" if want is list else ""))
        low, high = RANGES.get(key, (None, None))
        if low is not None and not low <= value <= high:
            raise UserError(f"--config {path}: {key} = {value} must lie in {low}..{high}")
    return data


def settings(config: Path | None, given: dict) -> tuple[Path, ServeOptions, list[Path]]:
    """(engine directory, options, trusted keys) from the ``--config`` file and the options given on the command
    line (None: not given), the command line winning."""
    merged = {**(read(config) if config else {}), **{k: v for k, v in given.items() if v is not None}}
    engine, spool = merged.pop("engine", None), merged.pop("spool", None)
    if not engine or not spool:
        missing = " and ".join(n for n, v in (("the engine directory", engine), ("--spool", spool)) if not v)
        raise UserError(f"give {missing} (on the command line, or as engine / spool in --config)")
    token_file = merged.pop("token_file", None)
    forward = merged.pop("forward", None)
    trusted = [Path(k) for k in as_list(merged.pop("trusted_key", []))]
    lists = {k: tuple(as_list(merged.pop(k))) for k in ("accept_modality", "accept_sop_class", "accept_body_part")
             if k in merged}
    if "allow_ae" in merged:
        lists["allow_ae"] = parse_ae_list(",".join(as_list(merged.pop("allow_ae"))) if merged.get("allow_ae") != []
                                          else "")
    paths = {k: Path(merged.pop(k)) for k in ("tls_cert", "tls_key", "tls_ca") if k in merged}
    opts = ServeOptions(spool=Path(spool), token=read_token(Path(token_file)) if token_file else None,
                        forward=parse_forward(forward) if forward else None,
                        min_free=size(merged.pop("min_free", None)), **lists, **paths, **merged)
    return Path(engine), opts, trusted


def as_list(value) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value or [])


def size(text: str | int | None, option: str = "--min-free") -> int:
    """A size with its unit (B, KB, MB, GB, TB; powers of ten) in bytes."""
    if text is None:
        return 0
    if isinstance(text, int):
        return text
    found = SIZE.match(str(text))
    if not found:
        raise UserError(f"{option} {text!r}: give a size such as 500MB or 5GB (units B, KB, MB, GB, TB)")
    return int(float(found[1]) * UNITS[(found[2] or "B").upper()])
