"""The ``dcube-edge`` command line: one module per command group, each parsing its options, calling one
library function and rendering the result. Exit codes: 0 success, 1 some inputs failed (the rest were
processed), 2 user error (one red line; bad option values included), 3 internal error (with the --debug
hint), 130 interrupted."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from dcube_edge.errors import UserError

from .common import EXIT_INTERNAL, EXIT_USER, STATE, app, err

# Each module registers its commands on `app`; --help lists them in this order (the order of the work).
for _group in ("training", "engines", "serve", "monitor", "inference", "bench"):
    importlib.import_module(f".{_group}", __name__)

__all__ = ["app", "main"]


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
                 verbose: Annotated[bool, typer.Option("--verbose", help="Let third-party tools (NNCF, OpenVINO) print their INFO logs.")] = False) -> None:
    STATE["debug"] = debug
    if verbose:
        os.environ["DCUBE_EDGE_VERBOSE"] = "1"


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause and fix: every :class:`~dcube_edge.errors.UserError` (bad data, options, engines,
    missing backends, diverging training) and the operating system's refusals (unreadable files, full disks).
    Anything else, a ValueError from numpy included, is an internal error."""
    return (UserError, OSError)


def main() -> None:
    """Console entry point (see the module docstring for the exit codes)."""
    try:
        code = app(standalone_mode=False)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # noqa: BLE001 — the single place that turns errors into messages
        if STATE["debug"]:
            raise
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # the CLI parser's usage errors
            command = getattr(getattr(e, "ctx", None), "command_path", "dcube-edge")
            if e.format_message():  # (no arguments at all: the help was shown instead)
                err.print(f"[bold red]error:[/] {escape(e.format_message())} (see `{escape(command)} --help`)",
                          highlight=False, soft_wrap=True)
            sys.exit(EXIT_USER)
        if isinstance(e, user_errors()):
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            sys.exit(EXIT_USER)
        err.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(str(e))} (run with --debug for the traceback)",
                  highlight=False, soft_wrap=True)
        sys.exit(EXIT_INTERNAL)
    if code == 130 and not STATE.get("interrupt_reported"):
        err.print("[red]interrupted[/]: what was written is complete (writes are atomic)")
    sys.exit(code if isinstance(code, int) else 0)
