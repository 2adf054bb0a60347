"""`serve` and `spool status | retry`: parse the options, call the library, render."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from .common import STATE, app, emit_json, err, out, to_stdout, writable

# What the command line takes for each kind of setting (runtimes/serve/options.py declares the settings).
CLI_TYPES = {"int": int, "bool": bool, "path": Path, "paths": list[Path], "list": list[str]}  # lists: repeatable
METAVARS = {"list": "A,B", "paths": "PATH", "path": "PATH", "int": "N", "duration": "72h", "size": "5GB", "bool": "", "str": "TEXT"}


def serve(config: Path | None = None, **given) -> None:
    """A DICOM node on the workstation: the scanner sends (C-STORE or STOW-RS), every acknowledged instance is
    classified once and kept in a ledger, each result becomes one DICOM SR kept in the spool and delivered to
    every destination (needs the `serve` extra). Ctrl-C or SIGTERM stops it (exit 130 / 143) with what is
    pending kept for the next start."""
    from dcube_edge.runtimes.serve import Service, logs
    from dcube_edge.runtimes.serve.config import settings

    opts = settings(config, given)
    logs.configure(opts.log_format, verbose=STATE["debug"])
    service = Service(opts, reload=(lambda: settings(config, given)) if config else None)
    code = service.run(banner=lambda text: err.print(text, highlight=False, soft_wrap=True))
    STATE["interrupt_reported"] = True  # the stop was reported with what is pending
    raise typer.Exit(code)


def parameters() -> list[inspect.Parameter]:
    """The command line of `serve`, one option per setting (None: not given, so the config file may give it)."""
    from dcube_edge.runtimes.serve.options import specs

    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--config", help="TOML file with any of these settings (dashes as underscores); the "
                                  "command line overrides it. SIGHUP re-reads it: a changed "
                                  f"{', '.join(n for n, (spec, _) in specs().items() if spec.live)} applies at once, a "
                                  "bad file is refused and the node keeps running.")])]
    for name, (spec, default) in specs().items():
        kind = CLI_TYPES.get(spec.kind, str)
        shown = spec.shown or (default if default not in (None, (), False) else None)
        text = spec.help + (f" \\[default: {shown}]" if shown is not None else "")
        if spec.argument:
            info = typer.Argument(help=text, show_default=False)
        else:
            info = typer.Option(spec.option(name), help=text, show_default=False, min=spec.low if spec.kind == "int" else None,
                                max=spec.high if spec.kind == "int" else None, metavar=METAVARS.get(spec.kind))
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[kind | None, info]))
    return params


serve.__signature__ = inspect.Signature(parameters())  # type: ignore[attr-defined]
serve.__annotations__ = {}
app.command()(serve)


spool_app = typer.Typer(help="Inspect a node's spool and re-queue dead-lettered results (works while it serves).",
                        no_args_is_help=True)
app.add_typer(spool_app, name="spool")


@spool_app.command("status")
def spool_status(spool: Annotated[Path, typer.Argument(help="The node's --spool folder.")],
                 json_out: Annotated[Path | None, typer.Option("--json", help="Write the status JSON here ('-' = stdout).")] = None) -> None:
    """Instances by state, deliveries by destination and state, every dead-lettered result with its reason, sizes
    and ages."""
    writable(json_out)
    from dcube_edge import report
    from dcube_edge.runtimes.serve.spool import status

    found = status(spool)
    if not to_stdout(json_out):
        for item in report.spool(spool, found):
            out.print(item)
    emit_json(found, json_out)


@spool_app.command("retry")
def spool_retry(spool: Annotated[Path, typer.Argument(help="The node's --spool folder.")],
                uid: Annotated[str | None, typer.Option("--uid", help="Only this SOP Instance UID's dead deliveries.")] = None) -> None:
    """Put dead-lettered deliveries back in the queue (a running node picks them up within a second)."""
    from dcube_edge.runtimes.serve.spool import retry

    n = retry(spool, uid)
    out.print(f"re-queued {n} dead-lettered deliver{'y' if n == 1 else 'ies'}" + (f" of {uid}" if uid else ""))
