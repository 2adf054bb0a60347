"""`serve --config FILE`: one TOML file holding any setting (deploy/serve.toml is an example). A key is a
setting's name (:class:`.options.ServeOptions`: an option's name with dashes as underscores); an option given on the
command line overrides the file; an unknown key or a bad value stops the start with exit 2, naming the key.

On SIGHUP the node reads the file again (:func:`settings` with the same command line): a file that does not
read, or holds a bad value, is refused with the reason and the node keeps the settings it runs with."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dcube_edge.errors import UserError

from .options import ServeOptions, build, specs

RENAMED = {"max_attempts": "retry_for (a duration, e.g. 72h: how long an unanswering destination is retried)"}


def read(path: Path) -> dict[str, Any]:
    """The file's settings by name (unparsed); an unknown key is refused."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise UserError(f"--config {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path} is not valid TOML: {e}") from None
    keys = specs()
    for key in data:
        if key in RENAMED:
            raise UserError(f"--config {path}: {key} was replaced by {RENAMED[key]}")
        if key not in keys:
            close = [k for k in keys if k.split("_")[0] == key.split("_")[0]]
            raise UserError(f"--config {path}: unknown key {key!r}" + (f" (did you mean {', '.join(close)}?)" if close
                                                                       else f"; keys are {', '.join(keys)}"))
    return data


def settings(config: Path | None, given: dict[str, Any]) -> ServeOptions:
    """The settings from the ``--config`` file and the options given on the command line (None: not given), the
    command line winning; every value checked where it was given."""
    return build((f"--config {config}: ", read(config) if config else {}), ("", given))
