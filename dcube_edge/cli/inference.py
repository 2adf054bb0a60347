"""`classify` and `evaluate` (no PyTorch needed): parse the options, call the library, render."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dcube_edge.report import shown

from .common import EXIT_SOME_FAILED, STATE, TRUSTED_KEY_HELP, app, emit_json, err, out, show_metrics, to_stdout, writable

TABLE_ROWS = 100  # above this many files, classify prints a summary instead of one row per file
MAX_FRAMES_HELP = "Refuse a DICOM object with more frames than this (each frame is classified)."


@app.command()
def classify(engine: Annotated[Path, typer.Argument(help="Engine directory from `export`.")],
             inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images (DICOM recognised by content).")],
             batch_size: Annotated[int, typer.Option(min=1, help="Images per engine call.")] = 32,
             workers: Annotated[int, typer.Option(min=1, help="Threads decoding images.")] = 1,
             threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for the backend.")] = None,
             recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also classify images in nested folders.")] = False,
             trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help=TRUSTED_KEY_HELP)] = None,
             max_frames: Annotated[int, typer.Option(min=1, help=MAX_FRAMES_HELP)] = 10_000,
             json_out: Annotated[Path | None, typer.Option("--json", help="Write predictions JSON here ('-' = stdout).")] = None) -> None:
    """Classify images with an engine (no PyTorch needed). Every frame of a multi-frame DICOM object and every
    tissue region of an ultrasound object is classified (--json lists them under each file's "frames"); the file's
    decision combines them by the engine's instance policy. Streams in batches; exit 1 if any file could not be
    classified (the others still are)."""
    writable(json_out)
    from rich.progress import Progress

    from dcube_edge import report, runtimes
    from dcube_edge.runtimes import inputs as listing
    from dcube_edge.runtimes import isa
    from dcube_edge.runtimes.files import json_list_stream

    files, skipped, nested = listing.expand(inputs, recursive)
    if nested:
        err.print(f"[yellow]note:[/] {len(nested)} sub-folder(s) not entered (pass --recursive to include them)")
    clf = runtimes.load(engine, threads=threads, trusted_keys=trusted_key)
    rows: list[runtimes.Prediction] = []
    noted: list[runtimes.Prediction] = []
    failed: list[tuple[str, str]] = []  # (path, why)
    labels: Counter[str] = Counter()
    head = {"engine": str(engine), "backend": clf.manifest.backend, "precision": clf.manifest.precision,
            "effective_precision": clf.manifest.record.precision.effective(), "classes": clf.classes,
            "operating_point": clf.decision.describe(), "temperature": clf.decision.temperature,
            "preprocess": clf.spec.to_dict()}
    if foreign := clf.manifest.foreign_build(isa.tag()):
        err.print(f"[yellow]note: {engine.name} was {escape(foreign)}[/]")
    timing: dict = {}  # filled in before the JSON closes
    total = len(files) + len(skipped)
    with clf, json_list_stream(json_out, head, "predictions", tail=timing) as add, \
            Progress(console=err, transient=True, disable=len(files) <= batch_size) as bar:
        task = bar.add_task("classifying", total=total)
        passed_over = [runtimes.Prediction(str(path), error=f"skipped: {why}") for path, why in skipped]
        for p in [*passed_over, *clf.classify(files, batch_size=batch_size, workers=workers, max_frames=max_frames)]:
            add({**p.to_dict(), "decision": None if p.error else clf.decision.explain(p.probs)})
            if p.error:
                failed.append((p.path, p.error))
            elif p.label is not None:
                labels[p.label] += 1
            noted += [p] if p.notes or (STATE["debug"] and p.warnings) else []
            if total <= TABLE_ROWS and not to_stdout(json_out):
                rows.append(p)
            bar.advance(task)
        timing["engine_time"] = clf.engine_time()
    if not to_stdout(json_out):
        title = f"{engine.name}: {clf.manifest.backend} {clf.manifest.precision}"
        if rows:
            out.print(report.predictions(title, rows, clf.classes, clf.decision))
        else:
            out.print(report.prediction_counts(f"{title}: {total} files", labels, clf.classes, len(failed)))
            for path, why in failed[:10]:
                err.print(f"[red]{shown(path)}: {escape(why)}[/]")
        for p in noted[:10]:
            for line in p.notes + (p.warnings if STATE["debug"] else []):
                err.print(f"[yellow]note:[/] {shown(p.path)}: {escape(line)}", soft_wrap=True)
        if failed:
            err.print(f"[red]{len(failed)} of {total} file(s) could not be classified[/]")
        err.print(f"computes in: {escape(clf.manifest.precision_parts())}; label = decision at the operating point "
                  f"({escape(clf.decision.describe())}), probabilities calibrated (temperature {clf.decision.temperature:.3g})"
                  + ("; in brackets: the probabilities the operating point compares (calibrated log-probabilities plus "
                     "the per-class biases, renormalised)" if clf.decision.bias is not None and rows else ""))
        if timing["engine_time"]:
            err.print("engine time per call (median, decoding excluded): " + ", ".join(
                f"{t['p50_ms']:.2f} ms at batch {b} ({t['calls']} call{'s' * (t['calls'] > 1)})"
                for b, t in timing["engine_time"].items()))
        if json_out is not None:
            err.print(f"wrote {json_out}")
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def evaluate(target: Annotated[Path, typer.Argument(help="Engine directory, or a run directory (PyTorch FP32).")],
             data: Annotated[Path, typer.Argument(help="A split folder with one sub-folder per class.")],
             batch_size: Annotated[int, typer.Option(min=1, help="Images per engine call.")] = 64,
             threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for the backend.")] = None,
             bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for 95 % intervals (0 = none).")] = 1000,
             trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help=TRUSTED_KEY_HELP)] = None,
             plot: Annotated[Path | None, typer.Option("--plot", help="Write roc.png (the operating point marked) and reliability.png into this folder.")] = None,
             max_frames: Annotated[int, typer.Option(min=1, help=MAX_FRAMES_HELP)] = 10_000,
             json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics JSON here ('-' = stdout).")] = None) -> None:
    """At the engine's operating point: per class sensitivity, specificity, PPV, NPV, balanced accuracy,
    macro-F1, ECE, Brier; at argmax: accuracy, macro-F1, AUC, per-class recall, confusion matrix; all with
    bootstrap intervals. Engines and the torch model are scored the same way. Scored per file (a cine loop's
    decision by the engine's instance policy); where files hold several frames or tissue regions, also per frame."""
    writable(json_out)
    from dcube_edge.evaluation import evaluate as run_evaluate

    report = run_evaluate(target, data, batch_size, threads, bootstrap, trusted_key, plot, max_frames)
    for warning in report.get("warnings", []):
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    show_metrics(f"{target.name} ({report['backend']} {report['precision']}) on {data}", report, json_out)
    if "per_frame" in report:
        show_metrics(f"per frame ({report['per_frame']['objects']} files; each frame, each tissue region, with its "
                     "file's label)", report["per_frame"], json_out)
    emit_json(report, json_out)
