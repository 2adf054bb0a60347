"""`monitor SPOOL`: the node's monitor windows and alerts (docs/monitoring.md), read from the spool's ledger."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .common import EXIT_SOME_FAILED, app, emit_json, screen, to_stdout, writable
from .serve import spool_app


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
    yield from performance_table(found["performance"])
    shadow = found["engines"]["shadow"]
    if shadow and shadow.get("compared"):
        yield (f"shadow {escape(str(shadow.get('path')))}: the same call on {shadow['agreement']:.1%} "
               f"({shadow['low']:.1%}-{shadow['high']:.1%}) of {shadow['compared']} instance(s)"
               + (f"; differs: {escape(', '.join(f'{k} {v}' for k, v in shadow['differences'].items()))}"
                  if shadow["differences"] else ""))
    switches = [h for h in found["engines"]["history"] if h["action"] != "start"]
    if switches:
        yield f"engine switches: {len(switches)}, the last a {switches[-1]['action']} ({escape(switches[-1]['outcome'])})"
    for a in found["alerts"]:
        yield (f"[bold red]ALERT[/] {a['name']} since {a['since']}: p = {a['statistic']:.2g} under {a['threshold']:.0e} "
               f"over the {a['window']} ({escape(a['detail'])})")


@spool_app.command("label")
def spool_label(spool: Annotated[Path, typer.Argument(help="The node's --spool folder.")],
                csv_file: Annotated[Path, typer.Argument(help="CSV with a `label` column (a class name) and a "
                                                         "`sop_instance_uid` or `accession_number` column.")],
                json_out: Annotated[Path | None, typer.Option("--json", help="Write the import and the performance "
                                                              "figures as JSON here ('-' = stdout).")] = None) -> None:
    """Import truth that arrived later (pathology, the radiologist's read) for the node's results, by SOP Instance
    UID or Accession Number, and show the site's figures at the operating point against the model card's (works
    while the node serves: its monitor raises the performance alert at its next batch)."""
    writable(json_out)
    from dcube_edge.errors import UserError
    from dcube_edge.runtimes.serve.monitor import labels, report
    from dcube_edge.runtimes.serve.monitor.store import reference_of
    from dcube_edge.runtimes.serve.spool import open_ledger

    if not csv_file.is_file():
        raise UserError(f"{csv_file} is not a file: give the CSV of labels")
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{csv_file} is not UTF-8 text: save the labels as a UTF-8 CSV") from None
    rows = labels.read_csv(text, str(csv_file))
    ledger = open_ledger(spool)
    try:
        reference = reference_of(ledger)
        classes = list(reference.decision_rates) if reference else labels.classes_seen(ledger)
        done = labels.add(ledger, rows, classes, f"file {csv_file.name}")
        found = report.status(ledger)
    finally:
        ledger.close()
    show = screen(json_out)
    if not to_stdout(json_out):
        show.print(f"labelled {done.labelled} result(s) from {len(rows)} row(s)"
                   + (f"; {len(done.unmatched)} row(s) name no instance the node holds" if done.unmatched else "")
                   + (f"; {len(done.unknown_class)} row(s) name no class of the engine ({', '.join(classes)}), e.g. "
                      f"{escape(done.unknown_class[0])}" if done.unknown_class else ""))
        yield_all(show, performance_table(found["performance"]))
    emit_json({"labelled": done.labelled, "unmatched": done.unmatched, "unknown_class": done.unknown_class,
               "performance": found["performance"]}, json_out)
    if done.unmatched or done.unknown_class:
        raise typer.Exit(EXIT_SOME_FAILED)  # some rows were not taken: exit 1, as for inputs that failed


def yield_all(show, items) -> None:
    for item in items:
        show.print(item)


def performance_table(perf: dict):
    if not perf["classes"]:
        return
    table = Table(title=f"at the operating point: {perf['labelled']} labelled result(s) (95 % Wilson intervals); "
                        f"estimated from the calibrated probabilities on the {perf['estimated_on']}")
    for col in ("class", "figure", "site", "model card", "estimated without labels"):
        table.add_column(col, overflow="fold")

    def shown(f: dict | None) -> str:
        if not f or f["value"] is None:
            return "-"
        return f"{f['value']:.3f}" + (f" ({f['low']:.3f}-{f['high']:.3f}, n {f['n']})" if f["low"] is not None else "")

    for c in perf["classes"]:
        for k in ("sensitivity", "specificity", "ppv", "npv"):
            flag = "[bold red]WORSE[/] " if c["alarming"] and k in ("sensitivity", "specificity") else ""
            table.add_row(c["name"], flag + k, shown(c["site"].get(k)), shown(c["card"].get(k)),
                          shown(c["estimated"].get(k)))
        if c.get("ece") is not None:  # the engine's own figure is in its model card (docs/evaluation.md)
            table.add_row(c["name"], "calibration error (ECE)", f"{c['ece']:.3f}", "-", "-")
    yield table


engine_app = typer.Typer(help="Switch a running node's engine: promote its shadow, or roll back (the switch is made "
                              "between two batches; nothing received is lost).", no_args_is_help=True)
app.add_typer(engine_app, name="engine")
NodeUrl = Annotated[str, typer.Option("--node", help="The node's HTTP address.")]
TokenFile = Annotated[Path, typer.Option("--token-file", help="The file holding the node's bearer token "
                                                             "(its --token-file).")]


def ask_node(url: str, token_file: Path, action: str) -> dict:
    """POST /v1/engine/ACTION to a running node; its answer (a refusal is a user error naming why)."""
    import json
    import urllib.error
    import urllib.request

    from dcube_edge.errors import UserError

    if not token_file.is_file():
        raise UserError(f"--token-file {token_file} is not a file: give the node's token file")
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/engine/{action}", data=b"", method="POST", headers={
        "Authorization": f"Bearer {token_file.read_text().strip()}"})
    try:
        with urllib.request.urlopen(request, timeout=180) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        try:
            why = json.loads(body).get("error", body)
        except ValueError:
            why = body
        raise UserError(f"the node refused the {action} ({e.code}): {why}") from None
    except urllib.error.URLError as e:
        raise UserError(f"no node answers at {url} ({e.reason}); give its address with --node") from None


def switched(answer: dict) -> None:
    out = screen(None)
    out.print(f"active: {escape(answer['active']['path'])} ({answer['active']['sha256'][:12]}…, "
              f"{escape(answer['active']['name'])})")
    out.print(f"shadow: {escape(answer['shadow']['path'])} ({answer['shadow']['sha256'][:12]}…)")


@engine_app.command("promote")
def engine_promote(token_file: TokenFile, node: NodeUrl = "http://127.0.0.1:8080") -> None:
    """Make the node's shadow engine active (verified again first); the active one becomes the shadow."""
    switched(ask_node(node, token_file, "promote"))


@engine_app.command("rollback")
def engine_rollback(token_file: TokenFile, node: NodeUrl = "http://127.0.0.1:8080") -> None:
    """Make the engine active before the last switch active again (verified again first)."""
    switched(ask_node(node, token_file, "rollback"))
