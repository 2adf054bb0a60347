"""The tables the command line prints (rich), built from the same dicts ``--json`` writes. Torch-free."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from dcube_edge.runtimes.record import EngineRecord
from dcube_edge.runtimes.sections import Parity


def shown(path: str | Path) -> str:
    """A path safe to print: bytes that are not UTF-8 appear as \\xNN escapes, markup is escaped."""
    return escape(os.fsencode(str(path)).decode("utf-8", "backslashreplace"))


def operating_point(m: dict) -> Iterator[RenderableType]:
    """`evaluate` at the engine's operating point: per class sensitivity, specificity, PPV, NPV (with intervals),
    then the summary figures."""
    op = m["operating_point"]
    ci = op.get("ci95", {})

    def cell(value, key: str) -> str:
        if value is None:
            return "–"
        return f"{value:.3f}" + (f" [{ci[key][0]:.3f}, {ci[key][1]:.3f}]" if ci.get(key) else "")

    table = Table(title=f"at the operating point ({op['rule']}; probabilities at temperature {op['temperature']:.3g})")
    for col in ("class", "n", "sensitivity", "specificity", "PPV", "NPV"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c, r in op["per_class"].items():
        table.add_row(c, str(r["n"]), *(cell(r[k], f"{c}.{k}") for k in ("sensitivity", "specificity", "ppv", "npv")))
    yield table
    yield (f"balanced accuracy {cell(op['balanced_accuracy'], 'balanced_accuracy')}, macro-F1 "
           f"{cell(op['macro_f1'], 'macro_f1')}, lowest class recall {cell(op['lowest_recall'], 'lowest_recall')}, "
           f"ECE {op['ece']:.4f}, Brier {op['brier']:.4f}")


def metrics(title: str, m: dict) -> Iterator[RenderableType]:
    """At the operating point where the report has one; then accuracy / macro-F1 / AUC at argmax (with bootstrap
    intervals when present), recall and confusion."""
    if "operating_point" in m:
        yield from operating_point(m)
    table = Table(title=f"{title}: {m['n']} images" + (", argmax" if "operating_point" in m else "")
                  + (" (95 % bootstrap intervals)" if "ci95" in m else ""))
    ci = m.get("ci95", {})

    def cell(k: str) -> str:
        if m[k] is None or m[k] != m[k]:  # undefined (a class absent from the labels): say so, not "nan"
            return "– (undefined)"
        return f"{m[k]:.4f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if ci.get(k) and None not in ci[k] else "")

    for col in ("accuracy", "macro-F1", "AUC"):
        table.add_column(col, justify="right")
    table.add_row(cell("accuracy"), cell("macro_f1"), cell("auc"))
    yield table
    recall = Table(title="per-class recall and confusion matrix (rows: true, columns: predicted)")
    names = list(m["per_class_recall"])
    recall.add_column("class")
    recall.add_column("recall", justify="right")
    for n in names:
        recall.add_column(n, justify="right")
    for n, row in zip(names, m["confusion_matrix"]):
        r = m['per_class_recall'][n]
        recall.add_row(n, '–' if r is None else f"{r:.3f}", *map(str, row))
    yield recall


def parity(out_dir: Path, record: EngineRecord) -> Table:
    p = record.parity or Parity()
    table = Table(title=f"{out_dir}: {record.backend} {record.precision.name} vs torch fp32 ({p.data})"
                        + ("" if p.within_tolerance is not False else " — OUTSIDE its tolerance"))

    def fmt(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    for col in ("top-1 agreement", "logit cosine (min)", "max |Δlogit|", "accuracy", "AUC"):
        table.add_column(col, justify="right")
    ties = p.near_tie_flips
    agreement = fmt(p.top1_agreement) + (f" ({ties} near-tie flip{'s' * (ties != 1)} excused: "
                                         f"{fmt(p.top1_agreement_beyond_ties)})" if ties else "")
    table.add_row(agreement, fmt(p.logit_cosine_min), f"{p.max_abs_logit_diff:.2e}",
                  f"{fmt(p.accuracy_engine)} ({p.accuracy_delta or 0:+.4f})" if p.accuracy_engine is not None else "–",
                  f"{fmt(p.auc_engine)} ({p.auc_delta or 0:+.4f})" if p.auc_engine is not None else "–")
    return table


def views_read(p) -> str:
    """What was read of a file where it is more than one picture: '120 frames × 2 tissue regions, median', 'tissue
    region 1', 'whole frame' (where its regions could not be used); '' for a plain image."""
    if p.error or not p.frames:
        return ""
    frames = len({f.frame for f in p.frames if f.frame is not None})
    regions = sorted({f.region for f in p.frames if f.region is not None})
    parts = [f"{frames} frame{'s' * (frames > 1)}"] if frames > 1 else []
    if len(regions) == 1:
        parts.append(f"tissue region {regions[0]}")
    elif regions:
        parts.append(f"{len(regions)} tissue regions")
    elif p.notes:
        parts.append("whole frame")
    text = " × ".join(parts)
    if len(p.frames) > 1:
        text += f", {p.instance_policy}"
    return text


def predictions(title: str, rows: list, classes: list[str], decision=None) -> Table:
    """One row per file (errors in red); where the operating point compares other probabilities than the
    calibrated ones (per-class biases), those in brackets beside them; where a file is several views (frames,
    tissue regions), what was read."""
    table = Table(title=title)
    table.add_column("file", overflow="fold")
    table.add_column("prediction")
    for c in classes:
        table.add_column(f"p({c})", justify="right")
    read = [views_read(p) for p in rows]
    if any(read):
        table.add_column("read")
    for p, what in zip(rows, read):
        extra = [escape(what)] if any(read) else []
        if p.error:
            table.add_row(shown(p.path), f"[red]error: {escape(p.error)}[/]", *[""] * len(classes), *extra)
        else:
            compared = decision.explain(p.probs)["compared"] if decision is not None and decision.bias is not None else {}
            table.add_row(shown(p.path), p.label, *[f"{p.probs[c]:.3f}" + (f" ({compared[c]:.3f})" if c in compared else "")
                                                    for c in classes], *extra)
    return table


def prediction_counts(title: str, counts: dict[str, int], classes: list[str], errors: int) -> Table:
    """Files per predicted class, for runs too long to list."""
    table = Table(title=title)
    table.add_column("prediction")
    table.add_column("files", justify="right")
    for c in classes:
        table.add_row(c, str(counts.get(c, 0)))
    table.add_row("[red]error[/]", str(errors))
    return table


def serve_load(engine: Path, rows: list[dict], machine: dict) -> Iterator[RenderableType]:
    table = Table(title=f"serve {Path(engine).name} under load on {machine['cpu_model']} ({machine['cpu_count']} cpus): "
                        "loopback C-STORE, receipt → result")
    for col in ("senders", "instances", "instances/s", "p50 ms", "p99 ms", "batch sizes formed (size: instances)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["senders"]), str(r["instances"]), f"{r['throughput_per_s']:.1f}", f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", ", ".join(f"{k}: {v}" for k, v in r["batch_sizes"].items()))
    yield table


def loop(r: dict) -> Iterator[RenderableType]:
    """`bench --loop`: each stage's frames/s on one cine loop, and which part dominates."""
    m = r["machine"]
    table = Table(title=f"a {r['frames']}-frame cine loop ({r['screen']}) into {Path(r['engine']).name} "
                        f"({r['backend']} {r['precision']}, {r['input_size']} px) on {m['cpu_model']} ({m['cpu_count']} cpus)")
    for col in ("stage", "frames/s", "ms per frame"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for row in r["rows"]:
        table.add_row(row["stage"], f"{row['frames_per_s']:.1f}", f"{row['ms_per_frame']:.2f}")
    yield table
    yield (f"end to end {r['end_to_end_frames_per_s']:.1f} frames/s; {r['dominant']} dominates "
           f"({100 * r['reading_share']:.0f} % of reading + engine time is reading); load average "
           f"{' / '.join(map(str, r['load_average_1_5_15']))}")


def spool(folder: Path, s: dict) -> Iterator[RenderableType]:
    """`spool status`: states, deliveries, dead letters, sizes."""
    states = ", ".join(f"{n} {k}" for k, n in sorted(s["instances"].items())) or "empty"
    yield (f"{folder}: {s['total_instances']} instance(s): {states}; {s['result_srs']} result SR(s) kept; received "
           f"{s['oldest_received'] or '-'} .. {s['newest_received'] or '-'}; {s['pixel_files_purged']} pixel file(s) "
           f"deleted by retention; {s['refused_files']} refusal(s) in rejected/")
    yield "sizes: " + ", ".join(f"{name}/ {b / 1e6:.1f} MB" for name, b in s["bytes"].items())
    if s["deliveries"]:
        table = Table(title="result deliveries")
        for col in ("destination", "delivered", "pending", "dead"):
            table.add_column(col, justify="left" if col == "destination" else "right")
        for d, c in sorted(s["deliveries"].items()):
            table.add_row(d, *(str(c.get(k, 0)) for k in ("delivered", "pending", "dead")))
        yield table
    if s["dead"]:
        table = Table(title="dead-lettered (re-queue: dcube-edge spool retry SPOOL [--uid UID])")
        for col in ("SOP Instance UID", "destination", "attempts", "given up", "reason", "when"):
            table.add_column(col, overflow="fold")
        for d in s["dead"]:
            table.add_row(d["sop_instance_uid"], d["destination"], str(d["attempts"]), d["given_up"] or "",
                          escape(d["error"] or ""), d["updated"] or "")
        yield table
