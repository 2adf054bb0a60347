"""The tables the command line prints (rich), built from the same dicts ``--json`` writes. Torch-free."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table


def shown(path: str | Path) -> str:
    """A path safe to print: bytes that are not UTF-8 appear as \\xNN escapes, markup is escaped."""
    return escape(os.fsencode(str(path)).decode("utf-8", "backslashreplace"))


def operating_point(m: dict) -> Iterator[Table]:
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


def parity(out_dir: Path, manifest: dict) -> Table:
    p = manifest["parity"]
    table = Table(title=f"{out_dir}: {manifest['backend']} {manifest['precision']} vs torch fp32 ({p['data']})"
                        + ("" if p.get("within_tolerance", True) else " — OUTSIDE its tolerance"))

    def fmt(k: str) -> str:
        return f"{p[k]:.4f}" if k in p else "–"

    for col in ("top-1 agreement", "logit cosine (min)", "max |Δlogit|", "accuracy", "AUC"):
        table.add_column(col, justify="right")
    ties = p.get("near_tie_flips", 0)
    agreement = fmt("top1_agreement") + (f" ({ties} near-tie flip{'s' * (ties != 1)} excused: "
                                         f"{p['top1_agreement_beyond_ties']:.4f})" if ties else "")
    table.add_row(agreement, fmt("logit_cosine_min"), f"{p['max_abs_logit_diff']:.2e}",
                  f"{fmt('accuracy_engine')} ({p.get('accuracy_delta', 0):+.4f})" if "accuracy_engine" in p else "–",
                  f"{fmt('auc_engine')} ({p.get('auc_delta', 0):+.4f})" if "auc_engine" in p else "–")
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


def predictions(title: str, rows: list, classes: list[str]) -> Table:
    """One row per file (errors in red); where a file is several views (frames, tissue regions), what was read."""
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
            table.add_row(shown(p.path), p.label, *[f"{p.probs[c]:.3f}" for c in classes], *extra)
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


def bench(result: dict) -> Iterator[RenderableType]:
    """The latency table, effective precisions, the benchmark_app comparison, per-op profiles and figures."""
    from dcube_edge.bench.report import peaks_text, quality_cells
    from dcube_edge.bench.vs_app import vs_app_method
    from dcube_edge.runtimes.isa import recorded

    info = result["machine"]
    isa = recorded(info)
    gpu = f"; {info['gpu']}" if info["gpu"] else ""
    table = Table(title=f"latency on {info['cpu_model']} ({info['cpu_count']} cpus; {isa}{gpu})\n"
                        f"GEMM peaks: {peaks_text(result['gemm_peaks'])}")
    for col in ("engine", "backend", "precision", "batch", "p50 ms", "p90 ms", "p99 ms", "images/s", "vs eager",
                "vs best torch", "MB", "% own peak", "top-1 vs fp32", "AUC (Δ)"):
        table.add_column(col, justify="left" if col in ("engine", "backend", "precision") else "right")
    for r in result["results"]:
        name = Path(r["engine"]).name
        if "p50_ms" not in r:
            table.add_row(name, r["backend"], r["precision"], str(r["batch"]), f"[red]{escape(r['error'])}[/]")
            continue
        table.add_row(name, r["backend"], r["precision"], str(r["batch"]), f"{r['p50_ms']:.2f}",
                      f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['images_per_s']:.1f}",
                      f"{r['speedup_vs_torch']:.2f}x" if r.get("speedup_vs_torch") else "–",
                      f"{r['speedup_vs_fastest_torch']:.2f}x" if r.get("speedup_vs_fastest_torch") else "–",
                      f"{r['engine_mb']:.1f}" if "engine_mb" in r else "–",
                      f"{100 * r['fraction_of_gemm_peak']:.0f}%" if r.get("fraction_of_gemm_peak") else "–",
                      *quality_cells(r))
    yield table
    if any(r.get("top1_agreement") is not None for r in result["results"]):
        yield ("top-1 vs fp32, AUC (Δ): each engine against fp32 PyTorch on the images its export measured parity on "
               "(its manifest's parity), not timed here")
    last_batch = result["results"][-1]["batch"] if result["results"] else None
    for r in result["results"]:
        if r.get("effective_precision") and r["batch"] == last_batch:
            yield f"{Path(r['engine']).name}: {r['effective_precision']}"
    for f in result.get("vs_benchmark_app", []):
        yield (f"{Path(f['engine']).name} batch {f['batch']}: {f['p50_ms_dcube_edge']:.2f} ms here vs "
               f"{f['p50_ms_benchmark_app']:.2f} ms in benchmark_app ({100 * f['overhead']:+.1f} %, hint {f['hint']}, "
               f"{vs_app_method(f)})")
    for prof in result.get("profiles", []):
        ptable = Table(title=f"{Path(prof['engine']).name} ({prof['backend']} {prof['precision']}, batch {prof['batch']}): "
                             f"{prof['op_total_ms']:.2f} ms in ops per call, median of {prof['iterations']} calls")
        for col in ("op type", "ms/call", "fastest", "share", "ops", "kernels"):
            ptable.add_column(col, justify="left" if col in ("op type", "kernels") else "right")
        for op in prof["ops"][:12]:
            ptable.add_row(op["op_type"], f"{op['ms']:.3f}", f"{op.get('min_ms', op['ms']):.3f}",
                           f"{100 * op['share']:.1f}%", str(op["ops_per_call"]),
                           escape(", ".join(op["kernels"])))
        yield ptable
    if "truncation" in result:
        t = result["truncation"]
        yield (f"truncation after layer {t['truncated_after_layer']}: FLOP ratio {t['flop_ratio']:.2f}x, "
               f"latency speedup {t['latency_speedup']:.2f}x ({t['speedup_over_flop_ratio']:.2f} of the FLOP ratio)")
        t = result["timestep_batching"]
        yield (f"{len(t['timesteps'])} timesteps in one call: {t['p50_ms_one_call']:.2f} ms vs "
               f"{t['p50_ms_separate_calls']:.2f} ms in separate calls ({t['speedup']:.2f}x)")


def serve_load(engine: Path, rows: list[dict], machine: dict) -> Iterator[Table]:
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
    yield (f"{folder}: {s['instances'] and ', '.join(f'{n} {k}' for k, n in sorted(s['instances'].items())) or 'empty'}; "
           f"received {s['oldest_received'] or '-'} .. {s['newest_received'] or '-'}; "
           f"{s['pixel_files_purged']} pixel file(s) deleted by retention; {s['refused_files']} refusal(s) in rejected/")
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
        for col in ("SOP Instance UID", "destination", "attempts", "reason", "when"):
            table.add_column(col, overflow="fold")
        for d in s["dead"]:
            table.add_row(d["sop_instance_uid"], d["destination"], str(d["attempts"]), escape(d["error"] or ""),
                          d["updated"] or "")
        yield table
