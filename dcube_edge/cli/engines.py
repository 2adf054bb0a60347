"""`export`, `calibrate`, `keygen`, `sign`: parse the options, call the library, render."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcube_edge.export.options import ExportOptions

from .common import app, backend_help, emit_json, err, out, precision_help, writable


@app.command()
def export(run: Annotated[Path, typer.Argument(help="Run directory from `train` or `init`.")],
           out_dir: Annotated[Path, typer.Option("--out", "-o", help="Engine directory to write.")],
           backend: Annotated[str, typer.Option(help=backend_help())] = ExportOptions.backend,
           precision: Annotated[str, typer.Option(help=precision_help())] = ExportOptions.precision,
           calibration: Annotated[str | None, typer.Option(help="INT8: dataset folder or .npz from `calibrate` (default: the run's training data).")] = None,
           calibration_size: Annotated[int, typer.Option(min=1, help="INT8: calibration images.")] = ExportOptions.calibration_size,
           data: Annotated[Path | None, typer.Option(help="Parity data (default: the run's validation split).")] = None,
           max_batch: Annotated[int, typer.Option(min=1, help="Largest batch the engine accepts.")] = ExportOptions.max_batch,
           full_trunk: Annotated[bool, typer.Option(help="Keep all trunk blocks (for the truncation benchmark).")] = ExportOptions.full_trunk,
           triton_repo: Annotated[Path | None, typer.Option(help="Also write a Triton model repository entry here.")] = None,
           modality: Annotated[str | None, typer.Option(help="DICOM Modality values the training images were (e.g. US): `serve` accepts only these unless told otherwise.")] = None,
           operating_point: Annotated[str | None, typer.Option(help="How the engine decides, chosen on its own outputs: argmax | youden | sensitivity=0.90 | specificity=0.90 (two classes) | balanced (any) [default: youden for two classes, balanced for more].")] = None,
           positive_class: Annotated[str | None, typer.Option(help="The positive class of a two-class operating point (default: the rarer class).")] = None,
           operating_split: Annotated[Path | None, typer.Option(help="Labelled <class>/* folder to choose the operating point and calibration on (default: the run's validation split).")] = None,
           intended_use: Annotated[str | None, typer.Option(help="What this engine is for, in a sentence, for its model card.")] = None,
           class_codes: Annotated[str | None, typer.Option(help="What each class is in a standard terminology, for DICOM results: NAME=SCHEME:VALUE[:MEANING],... (e.g. malignant=SCT:21594007,benign=SCT:30807003) or a JSON file.")] = None,
           json_out: Annotated[Path | None, typer.Option("--json", help="Write the manifest JSON here ('-' = stdout).")] = None) -> None:
    """Export a run (D-Cube or baseline) to an engine dir: ONNX (truncated, timesteps baked in) → precision → backend,
    with a parity report, an operating point and a calibration."""
    writable(json_out)
    from dcube_edge.export.context import ExportContext
    from dcube_edge.export.plan import validate

    opts = ExportOptions(backend=backend, precision=precision, calibration=calibration,
                         calibration_size=calibration_size, data=str(data) if data else None, max_batch=max_batch,
                         full_trunk=full_trunk, triton_repo=str(triton_repo) if triton_repo else None,
                         class_codes=class_codes, modalities=modality, operating_point=operating_point,
                         positive_class=positive_class, operating_split=str(operating_split) if operating_split else None,
                         intended_use=intended_use)
    context = ExportContext(log=err.print)
    plan = validate(run, out_dir, opts, context)  # every option, before PyTorch is imported or anything written
    from dcube_edge import report
    from dcube_edge.export.build import export_plan

    with err.status(f"exporting {backend}/{precision} …"):
        record = export_plan(plan, context)
    out.print(report.parity(out_dir, record))
    emit_json(record.to_dict(), json_out)


@app.command()
def card(engine: Annotated[Path, typer.Argument(help="Engine directory.")],
         eval_json: Annotated[Path | None, typer.Option("--eval", help="`evaluate ENGINE SPLIT --json F` output: the card's evaluation at the operating point.")] = None,
         json_out: Annotated[Path | None, typer.Option("--json", help="Also write the card's JSON here ('-' = stdout).")] = None) -> None:
    """Write the engine's model card (model-card.md and model-card.json, generated, hashed into the manifest):
    intended use, training data, method, operating point and calibration, evaluation with intervals, parity,
    hardware, limitations. Write it before signing."""
    writable(json_out)
    from dcube_edge.card import CARD_MD, write

    made = write(engine, eval_json)
    err.print(f"wrote {engine / CARD_MD} and model-card.json (hashed into the manifest)")
    emit_json(made, json_out)


@app.command()
def calibrate(run: Annotated[Path, typer.Argument(help="Run directory (gives image size and seed).")],
              data: Annotated[Path, typer.Argument(help="Dataset folder; its training split is sampled.")],
              out_file: Annotated[Path, typer.Option("--out", "-o", help="Calibration .npz to write.")],
              size: Annotated[int, typer.Option(min=1, help="Images, stratified by class.")] = ExportOptions.calibration_size) -> None:
    """Build an INT8 calibration set (stratified, seeded, preprocessed like inference)."""
    from dcube_edge.export.calibration import for_run

    d = for_run(run, data, size, out_file)
    out.print(f"calibration set {out_file}: {d['size']} images, class counts {d['class_counts']}, sha256 {d['sha256'][:16]}…")


@app.command()
def keygen(out_file: Annotated[Path, typer.Option("--out", "-o", help="Private key file to create (the public key goes to FILE.pub).")]) -> None:
    """Create an Ed25519 key pair for signing engines (needs the `sign` extra)."""
    from dcube_edge.runtimes.signing import keygen as make_keys

    public = make_keys(out_file)
    out.print(f"private key {out_file} (keep it on the machine that approves engines), public key {public} "
              "(install it on workstations and pass it as --trusted-key)")


@app.command()
def sign(engine: Annotated[Path, typer.Argument(help="Engine directory to approve.")],
         key: Annotated[Path, typer.Option("--key", help="Private key from `keygen`.")]) -> None:
    """Sign an engine's manifest (which hashes every engine file); `--trusted-key` then accepts it."""
    from dcube_edge import runtimes
    from dcube_edge.runtimes.signing import sign as sign_manifest

    record = sign_manifest(runtimes.read(engine).path, key)  # only a verified engine is signed
    out.print(f"signed {engine} with key {record['key_id']} ({engine / 'manifest.sig'})")
