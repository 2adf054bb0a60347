"""What every command shares: the Typer app, the two consoles, one-line failures, --json output, progress
bars and the exit codes. Torch is imported only by the commands that train or export, so ``classify``,
``evaluate`` and engine benchmarks run on a workstation without it."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="D-Cube diffusion-feature classifiers for medical images: train, export, classify, bench.")
# Piped output (logs, CI) gets wide tables instead of rich's 80-column fallback.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
STATE = {"debug": False}
EXIT_SOME_FAILED, EXIT_USER, EXIT_INTERNAL = 1, 2, 3
JSON_HELP = "Write {what} JSON here ('-' = stdout)."
TRUSTED_KEY_HELP = "Refuse engines not signed by this public key (repeatable; see `sign`)."


def backend_help() -> str:
    from dcube_edge.runtimes import backends

    return " | ".join(backends.names())


def precision_help() -> str:
    from dcube_edge.runtimes import precisions

    return precisions.help_text()


def fail(message: str, code: int = EXIT_USER) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def ints(text: str, minimum: int = 1, option: str = "") -> tuple[int, ...]:
    """Comma-separated integers, each at least ``minimum``; a user error naming the option otherwise."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < minimum:
        fail(f"{option or 'expected'}: comma-separated integers of at least {minimum}, got {text!r}")
    return values


def to_stdout(json_out: Path | None) -> bool:
    return json_out is not None and str(json_out) == "-"


def screen(json_out: Path | None) -> Console:
    """Where tables go: stdout, unless --json - has it (then stderr, so the JSON parses)."""
    return err if to_stdout(json_out) else out


def emit_json(obj: object, path: Path | None) -> None:
    """--json: to a file when given a path, '-' for stdout."""
    from dcube_edge.runtimes.files import dumps, write_json

    if path is None:
        return
    if to_stdout(path):
        sys.stdout.write(dumps(obj) + "\n")
    else:
        write_json(path, obj)
        err.print(f"wrote {path}")


def writable(path: Path | None, option: str = "--json") -> None:
    """Refuse, before any work, an output path that is a folder or whose folder cannot take a new file."""
    if path is None or to_stdout(path):
        return
    if path.is_dir():
        fail(f"{option} {path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        fail(f"{option} {path}: folder {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        fail(f"{option} {path}: cannot write in {parent} ({e.strerror or e})")


def typed_options(ctx: typer.Context) -> set[str]:
    """The parameters of a command the user gave on the command line (not defaults or environment variables)."""
    return {name for name in ctx.params
            if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"}


def show_metrics(title: str, metrics: dict, json_out: Path | None = None) -> None:
    from dcube_edge import report

    for table in report.metrics(title, metrics):
        screen(json_out).print(table)


def progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)


def reporter(bar) -> Callable[[str, int, int, dict], None]:
    """A training ``report(phase, done, total, scalars)`` drawing one progress bar per phase."""
    tasks: dict[str, int] = {}

    def report(phase: str, done: int, total: int, scalars: dict) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total, info="")
        bar.update(tasks[phase], completed=done, total=total, info=" ".join(f"{k} {v:.3g}" for k, v in scalars.items()))

    return report


@contextlib.contextmanager
def resumable_progress(command: str, data: Path, out_dir: Path) -> Iterator[tuple[Callable, Callable]]:
    """Progress bars for a training command, as ``(report, log)`` that take a pending Ctrl-C at the next step; on
    it, say which checkpoints are kept and the command that resumes, and exit 130."""
    with progress() as bar, interrupt_between_steps() as check_interrupt:
        draw = reporter(bar)

        def report(phase: str, done: int, total: int, scalars: dict) -> None:
            check_interrupt()
            draw(phase, done, total, scalars)

        def log(*args: object) -> None:
            check_interrupt()
            bar.console.print(*args)

        try:
            yield report, log
        except KeyboardInterrupt:
            bar.stop()
            saved = sorted((out_dir / "state").glob("*")) if (out_dir / "state").is_dir() else []
            err.print(f"[red]interrupted[/]: {len(saved)} checkpoint file(s) kept in {out_dir / 'state'} (the last complete "
                      f"epoch); continue with:\n  dcube-edge {command} {data} --out {out_dir} --resume", soft_wrap=True)
            STATE["interrupt_reported"] = True
            raise typer.Exit(130) from None


@contextlib.contextmanager
def interrupt_between_steps() -> Iterator[Callable[[], None]]:
    """Ctrl-C during training sets a flag that the returned check turns into KeyboardInterrupt at the next
    progress update (every step), in plain code: Python drops an exception that a signal handler raises inside a
    finaliser or a C callback ("Exception ignored in ..."). A second Ctrl-C interrupts at once."""
    import signal

    pending: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    def check() -> None:
        if pending:
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. the CLI called from a worker thread): Python's default stays
        yield lambda: None
        return
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
