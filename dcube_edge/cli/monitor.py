"""`monitor SPOOL`: the node's monitor windows and alerts (docs/monitoring.md), read from the spool's ledger."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .common import app, emit_json, screen, to_stdout, writable


@app.command("monitor")
def monitor(spool: Annotated[Path, typer.Argument(help="The node's --spool folder.")],
            json_out: Annotated[Path | None, typer.Option("--json", help="Write the windows and the alerts as JSON "
                                                          "here ('-' = stdout).")] = None,
            plot: Annotated[Path | None, typer.Option("--plot", help="Write the reference-vs-now plots (PNG) into "
                                                      "this folder.")] = None) -> None:
    """What the node's monitor sees: each window (the last N instances, each of the last days) compared with the
    engine's reference and the site baseline, and the alerts active now (works while the node serves)."""
    writable(json_out)
    from dcube_edge.runtimes.serve.monitor.report import plot as draw
    from dcube_edge.runtimes.serve.monitor.report import status
    from dcube_edge.runtimes.serve.spool import open_ledger

    ledger = open_ledger(spool)
    try:
        found = status(ledger)
        written = draw(ledger, plot) if plot is not None else []
    finally:
        ledger.close()
    show = screen(json_out)
    if not to_stdout(json_out):
        for item in render(found):
            show.print(item)
        if plot is not None:
            show.print(f"plots: {len(written)} written to {plot}" if written else
                       "plots: none (the engine records no reference)")
    emit_json(found, json_out)


def render(found: dict):
    ref = found["reference"]
    yield (f"engine {found['engine_sha256'][:12]}…: reference of {ref['instances']} instances ({escape(str(ref['chosen_on']))})"
           if ref else f"engine {found['engine_sha256'][:12]}…: no reference (exported before monitoring; re-export)")
    yield (f"site baseline: {found['baseline_instances']} of {found['settings']['baseline']} instances"
           + ("" if found["baseline_instances"] else " (not learned yet)"))
    for w in found["windows"]:
        table = Table(title=f"{w['window']}: {w['instances']} instance(s)" + (
            f", out-of-distribution median {w['ood']['median']} (reference {w['ood']['reference_median']})"
            if "median" in w["ood"] else ""))
        for col in ("check", "p-value", "threshold", "test", "n", "what differs most"):
            table.add_column(col, overflow="fold")
        for f in w["findings"]:
            flag = "[bold red]ALERT[/] " if f["alarming"] else ""
            table.add_row(flag + f["name"], f"{f['statistic']:.2g}", f"{f['threshold']:.0e}", f["test"], str(f["n"]),
                          escape(f["detail"]))
        yield table
    if not found["alerts"]:
        yield "no active alert"
    for a in found["alerts"]:
        yield (f"[bold red]ALERT[/] {a['name']} since {a['since']}: p = {a['statistic']:.2g} under {a['threshold']:.0e} "
               f"over the {a['window']} ({escape(a['detail'])})")
