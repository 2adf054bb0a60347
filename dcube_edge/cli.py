"""The ``dcube-edge`` command line. Torch is imported only by the commands that train or export,
so ``classify``, ``evaluate`` and engine benchmarks run on a workstation without it."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from dcube_edge.errors import UserError
from dcube_edge.report import shown

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="D-Cube diffusion-feature classifiers for medical images: train, export, classify, bench.")
# Piped output (logs, CI) gets wide tables instead of rich's 80-column fallback.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
STATE = {"debug": False}
EXIT_SOME_FAILED, EXIT_USER, EXIT_INTERNAL = 1, 2, 3

def backend_help() -> str:
    from dcube_edge.runtimes import backends

    return " | ".join(backends.names())


PRECISION_HELP = "fp32 | fp16 (GPU; OpenVINO on AMX-FP16 CPUs) | bf16 (OpenVINO, torch on bf16 CPUs) | int8"


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause and fix: every :class:`~dcube_edge.errors.UserError` (bad data, options, engines,
    missing backends, diverging training) and the operating system's refusals (unreadable files, full disks).
    Anything else, a ValueError from numpy included, is an internal error."""
    return (UserError, OSError)


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


def emit_json(obj: object, path: Path | None) -> None:
    """--json: to a file when given a path, '-' for stdout."""
    from dcube_edge.runtimes.files import dumps, write_json

    if path is None:
        return
    if str(path) == "-":
        sys.stdout.write(dumps(obj) + "\n")
    else:
        write_json(path, obj)
        err.print(f"wrote {path}")


def writable(path: Path | None, option: str = "--json") -> None:
    """Refuse, before any work, an output path that is a folder or whose folder cannot take a new file."""
    import os
    import tempfile

    if path is None or str(path) == "-":
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


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
                 verbose: Annotated[bool, typer.Option("--verbose", help="Let third-party tools (NNCF, OpenVINO) print their INFO logs.")] = False) -> None:
    import os

    STATE["debug"] = debug
    if verbose:
        os.environ["DCUBE_EDGE_VERBOSE"] = "1"


@app.command("demo-data")
def demo_data(out_dir: Annotated[Path, typer.Argument(help="Folder to write <class>/*.png into.")],
              per_class: Annotated[int, typer.Option(min=1, help="Training images per class.")] = 60,
              val_per_class: Annotated[int, typer.Option(min=0, help="If > 0, write train/ and val/ splits.")] = 0,
              size: Annotated[int, typer.Option(min=8, help="Image side in pixels.")] = 64,
              seed: int = 0,
              dicom: Annotated[bool, typer.Option("--dicom", help="Write DICOM secondary-capture files (.dcm) instead of PNG, e.g. to send to `serve`.")] = False) -> None:
    """Write the built-in synthetic ultrasound phantoms (benign, malignant, normal)."""
    from dcube_edge.phantoms import write_demo

    counts = write_demo(out_dir, per_class, size, seed, val_per_class)
    if dicom:
        import numpy as np
        from PIL import Image

        from dcube_edge.runtimes.dicom import write_secondary_capture

        for png in sorted(Path(out_dir).rglob("*.png")):
            write_secondary_capture(np.asarray(Image.open(png).convert("L")), png.with_suffix(".dcm"))
            png.unlink()
    out.print(f"wrote {sum(counts.values())} phantom images to {out_dir} ({', '.join(f'{k}: {v}' for k, v in counts.items())})")


@contextlib.contextmanager
def _interrupt_between_steps() -> Iterator[Callable[[], None]]:
    """Ctrl-C during training sets a flag that the returned check turns into KeyboardInterrupt at the next
    progress update (every step), in plain code: Python drops an exception that a signal handler raises inside a
    finaliser or a C callback ("Exception ignored in ..."), and a `train` child once kept training for minutes after
    SIGINT in the test suite. A second Ctrl-C interrupts at once."""
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


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)


FIELD = {"layers": "layer_choice", "trunk": "trunk_from", "guide_branch": "resnet_block"}  # named otherwise in Config


@app.command()
def train(ctx: typer.Context, data: Annotated[Path, typer.Argument(help="Dataset: <root>/<class>/* or <root>/{train,val}/<class>/*.")],
          out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
          preset: Annotated[str | None, typer.Option(help="tiny | small | paper (default: tiny, or the --trunk run's).")] = None,
          steps_diffusion: Annotated[int | None, typer.Option(help="Step-1 budget in steps of --batch-size images (preset default).")] = None,
          steps_classifier: Annotated[int | None, typer.Option(help="Step-2 budget in steps (preset default; validated every epoch).")] = None,
          epochs_diffusion: Annotated[int | None, typer.Option(help="Step-1 budget in epochs of this data instead of steps.")] = None,
          epochs_classifier: Annotated[int | None, typer.Option(help="Step-2 budget in epochs instead of steps.")] = None,
          batch_size: Annotated[int | None, typer.Option(min=1, help="Images per step (preset default).")] = None,
          timesteps: Annotated[str | None, typer.Option(help="Fixed step-2 timesteps, e.g. 10,50,100.")] = None,
          seed: Annotated[int, typer.Option(help="Seed for splits, init and sampling.")] = 0,
          resnet_weights: Annotated[Path | None, typer.Option(help="Local ResNet-50 weights (.safetensors/.pth).")] = None,
          synthetic: Annotated[Path | None, typer.Option(help="Folder from `dcube-edge augment` to mix into training (never into validation).")] = None,
          layers: Annotated[str, typer.Option(help="Trunk layers for the head: gaussianity (the test) | all | last | indices, e.g. 4,5.")] = "gaussianity",
          random_t: Annotated[bool, typer.Option("--random-t", help="Step 2 as the reference: a random t per image at training and validation (engines still use --timesteps).")] = False,
          trunk: Annotated[Path | None, typer.Option(help="Reuse this run's trained step-1 trunk (or 'random': an untrained one); train only layer selection and step 2.")] = None,
          ema_decay: Annotated[float | None, typer.Option(help="Step-1 EMA decay of the trunk weights (0.999; 0 turns EMA off).")] = None,
          lr_schedule: Annotated[str | None, typer.Option(help="Step-1 lr after warmup: cosine (to 10 %) | constant (the reference) | wsd (constant, then cosine to 10 % over the last quarter).")] = None,
          guide_loss_weight: Annotated[float | None, typer.Option(help="Step 2: weight of a cross-entropy on the guide branch's pooled map (training only; 0 = the reference).")] = None,
          class_weights: Annotated[str | None, typer.Option(help="Step-2 cross-entropy class weights: balanced (inverse frequency, the default) | none (the reference).")] = None,
          guide_branch: Annotated[str, typer.Option(help="Step-2 ResNet guide branch: preset (small: ResNet-18 layout; tiny, paper: ResNet-50 layout) | resnet18 (basic blocks, width 64) | narrow-resnet50 (ResNet-50 layout at width 16, small's branch before 2026-11-26).")] = "preset",
          contrastive_weight: Annotated[float | None, typer.Option(help="Weight of step 1's margin contrastive loss (1; 0 turns it off).")] = None,
          min_snr_gamma: Annotated[float | None, typer.Option(help="Step-1 ε-loss weight min(SNR, γ)/SNR per timestep (0 = off, the reference; 5 is the usual γ).")] = None,
          diffusion_lr: Annotated[float | None, typer.Option(help="Step-1 peak learning rate (default: the preset's lr, 2e-4).")] = None,
          input_skip: Annotated[bool | None, typer.Option("--input-skip/--no-input-skip", help="Trunk predicts ε as a correction to the linear estimate g(t)·x_t (EDM-style skip; features and engines unchanged).")] = None,
          amp: Annotated[str, typer.Option(help="Step-1 autocast: auto (bf16 where the CPU/GPU has it and the trunk is wide enough to gain) | none | bf16 | fp16 (GPU).")] = "auto",
          grad_accum: Annotated[int, typer.Option(min=1, help="Step-1 batches per optimizer step.")] = 1,
          resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")] = False,
          json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics JSON here ('-' = stdout).")] = None) -> None:
    """Train step 1 (diffusion trunk), select layers, train step 2 (head); pick the model on validation.
    Multi-process: torchrun --nproc-per-node N -m dcube_edge.cli train ... (step 1 runs data-parallel)."""
    writable(json_out)
    import dataclasses

    from dcube_edge import distributed, rundir
    from dcube_edge.config import GUIDE_BRANCHES, Config
    from dcube_edge.train import resume_config
    from dcube_edge.train import train as run_train

    random_trunk = trunk is not None and str(trunk) == "random"
    distributed.setup()
    if (out_dir / "config.json").exists() and not resume:
        fail(f"{out_dir} already holds a run: pass --resume to continue it, or choose another --out")
    distributed.barrier()  # every rank has checked before rank 0 writes anything
    try:
        if preset is None:
            preset = rundir.load_config(trunk).preset if trunk and not random_trunk else "tiny"
        budgets = {k: v for k, v in dict(steps_diffusion=steps_diffusion, steps_classifier=steps_classifier,
                                         epochs_diffusion=epochs_diffusion, epochs_classifier=epochs_classifier).items()
                   if v is not None}
        if guide_branch not in ("preset", *GUIDE_BRANCHES):
            raise UserError(f"unknown --guide-branch {guide_branch!r}; choose preset or {' or '.join(GUIDE_BRANCHES)}")
        cfg = Config.from_preset(preset, **budgets, **GUIDE_BRANCHES.get(guide_branch, {}), ema_decay=ema_decay, lr_schedule=lr_schedule, guide_loss_weight=guide_loss_weight,
                                 class_weights=class_weights,
                                 batch_size=batch_size, seed=seed, timesteps=ints(timesteps, 0, '--timesteps') if timesteps else None,
                                 resnet_weights=str(resnet_weights) if resnet_weights else None,
                                 synthetic=str(synthetic) if synthetic else None, amp=amp, grad_accum=grad_accum,
                                 layer_choice=layers, random_t=random_t, contrastive_weight=contrastive_weight, min_snr_gamma=min_snr_gamma, diffusion_lr=diffusion_lr, input_skip=input_skip,
                                 trunk_from=("random" if random_trunk else str(trunk.resolve())) if trunk else None)
        if resume and (out_dir / "config.json").exists():
            given = {FIELD.get(name, name) for name in ctx.params if ctx.get_parameter_source(name).name == "COMMANDLINE"}
            cfg, finished = resume_config(out_dir, cfg, given & {f.name for f in dataclasses.fields(Config)})
            if finished:
                out.print(f"{out_dir} is already finished with these settings; nothing changed "
                          "(give a larger --steps-* budget to continue training it)")
                return
    except UserError as e:
        fail(str(e))
    if not distributed.is_main():
        run_train(data, out_dir, cfg, resume=resume, log=lambda *_: None, overrides=budgets)
        distributed.cleanup()
        return
    with _progress() as progress, _interrupt_between_steps() as check_interrupt:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int, scalars: dict) -> None:
            check_interrupt()
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total, info="")
            progress.update(tasks[phase], completed=done, total=total,
                            info=" ".join(f"{k} {v:.3g}" for k, v in scalars.items()))

        try:
            def log(*args: object) -> None:
                check_interrupt()
                progress.console.print(*args)

            metrics = run_train(data, out_dir, cfg, resume=resume, report=report, log=log, overrides=budgets)
        except KeyboardInterrupt:
            progress.stop()
            saved = sorted((out_dir / "state").glob("*")) if (out_dir / "state").is_dir() else []
            err.print(f"[red]interrupted[/]: {len(saved)} checkpoint file(s) kept in {out_dir / 'state'} (the last complete "
                      f"epoch); continue with:\n  dcube-edge train {data} --out {out_dir} --resume", soft_wrap=True)
            STATE["interrupt_reported"] = True
            raise typer.Exit(130) from None
    show_metrics("validation", metrics["validation"], json_out)
    out.print(f"run written to {out_dir} (best epoch {metrics['best_epoch']}; "
              f"{metrics['seconds']['diffusion']:.0f}s diffusion + {metrics['seconds']['classifier']:.0f}s classifier)")
    emit_json(metrics, json_out)
    distributed.cleanup()


@app.command()
def baseline(data: Annotated[Path, typer.Argument(help="Dataset folder, as for `train`.")],
             out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
             model: Annotated[str, typer.Option(help="resnet18 | resnet50 | branch (D-Cube's own ResNet guide branch alone)")] = "resnet18",
             preset: Annotated[str, typer.Option(help="Preset giving image size, batch and optimiser (as D-Cube's).")] = "small",
             steps: Annotated[int | None, typer.Option(help="Training steps (default: the preset's step-2 budget).")] = None,
             epochs: Annotated[int | None, typer.Option(help="Epochs instead of steps.")] = None,
             class_weights: Annotated[str, typer.Option(help="Cross-entropy class weights: balanced (inverse frequency, the default) | none.")] = "balanced",
             seed: int = 0,
             json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics JSON here ('-' = stdout).")] = None) -> None:
    """Train a plain CNN on the same splits and preprocessing as D-Cube (a baseline column for results)."""
    writable(json_out)
    from dcube_edge.baseline import ARCHS, train_baseline
    from dcube_edge.config import Config

    if model not in ARCHS:
        fail(f"unknown baseline {model!r}; choose one of {', '.join(ARCHS)}")
    if (out_dir / "config.json").exists():
        fail(f"{out_dir} already holds a run; choose another --out")
    try:
        cfg = Config.from_preset(preset, model=model, steps_classifier=steps, epochs_classifier=epochs, seed=seed,
                                 class_weights=class_weights)
    except UserError as e:
        fail(str(e))
    with _progress() as progress:
        task: list[int] = []

        def report(phase: str, done: int, total: int, scalars: dict) -> None:
            if not task:
                task.append(progress.add_task(model, total=total, info=""))
            progress.update(task[0], completed=done, info=" ".join(f"{k} {v:.3g}" for k, v in scalars.items()))

        metrics = train_baseline(data, out_dir, cfg, report=report, log=progress.console.print)
    show_metrics(f"{model} validation", metrics["validation"], json_out)
    emit_json(metrics, json_out)


@app.command()
def init(out_dir: Annotated[Path, typer.Argument(help="Run directory to create.")],
         preset: Annotated[str, typer.Option(help="tiny | small | paper")] = "paper",
         classes: Annotated[str, typer.Option(help="Comma-separated class names.")] = "benign,malignant,normal",
         layers: Annotated[str | None, typer.Option(help="Selected layers (default: the reference's breast layers 4,5, clipped to the preset).")] = None,
         seed: int = 0) -> None:
    """A run dir with random weights, to rehearse export and benchmarks without training."""
    from dcube_edge.config import Config
    from dcube_edge.train import init_run

    names = tuple(c.strip() for c in classes.split(","))
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        fail("--classes needs at least two distinct, non-empty names")
    unsafe = [n for n in names if n in (".", "..") or any(ch in n for ch in "/\\\0")]
    if unsafe:
        fail(f"class names become folder names and may not contain path separators: {unsafe}")
    if (out_dir / "config.json").exists():
        fail(f"{out_dir} already holds a run; init would overwrite its weights (choose another directory)")
    cfg = Config.from_preset(preset, seed=seed, classes=names)
    chosen = ints(layers, 0, '--layers') if layers else tuple(i for i in (4, 5) if i < cfg.num_layers) or (cfg.depth,)
    try:
        init_run(out_dir, cfg, chosen)
    except UserError as e:
        fail(str(e))
    out.print(f"random-weight {preset} run written to {out_dir} (layers {list(chosen)}, classes {', '.join(names)})")


@app.command()
def augment(run: Annotated[Path, typer.Argument(help="Run directory (its diffusion trunk samples the images).")],
            out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write <class>/*.png into.")],
            num_synthetic: Annotated[int, typer.Option(min=1, help="Images per class (ignored with --balance).")] = 16,
            balance: Annotated[bool, typer.Option("--balance/--per-class", help="Fill minority classes up to the majority.")] = False,
            data: Annotated[Path | None, typer.Option(help="--balance: training data (default: the run's).")] = None,
            sampler: Annotated[str, typer.Option(help="ddim (fast, deterministic) | ddpm (1000-step ancestral, as the reference)")] = "ddim",
            steps: Annotated[int, typer.Option(min=1, help="DDIM steps.")] = 50,
            seed: int = 0,
            batch_size: Annotated[int, typer.Option(min=1, help="Images sampled at once.")] = 16) -> None:
    """Sample class-conditional synthetic images; resumable, never overwrites an existing file."""
    from rich.progress import Progress

    from dcube_edge import rundir
    from dcube_edge.augment import augment as run_augment
    from dcube_edge.augment import balance_counts

    cfg = rundir.load_config(run)
    counts = balance_counts(cfg, str(data) if data else None) if balance else {c: num_synthetic for c in cfg.classes}
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("sampling", total=None)
        result = run_augment(run, out_dir, counts, sampler, steps, seed, batch_size,
                             progress=lambda done, total: progress.update(task, completed=done, total=total))
    out.print(f"wrote {result['written']} new image(s) to {out_dir} ({', '.join(f'{c}: {n}' for c, n in counts.items())} "
              f"requested; {sampler}, {result['steps']} steps per image)")


@app.command()
def export(run: Annotated[Path, typer.Argument(help="Run directory from `train` or `init`.")],
           out_dir: Annotated[Path, typer.Option("--out", "-o", help="Engine directory to write.")],
           backend: Annotated[str, typer.Option(help=backend_help())] = "onnxruntime",
           precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
           calibration: Annotated[str | None, typer.Option(help="INT8: dataset folder or .npz from `calibrate` (default: the run's training data).")] = None,
           calibration_size: Annotated[int, typer.Option(min=1, help="INT8: calibration images.")] = 256,
           data: Annotated[Path | None, typer.Option(help="Parity data (default: the run's validation split).")] = None,
           max_batch: Annotated[int, typer.Option(min=1, help="Largest batch the engine accepts.")] = 64,
           full_trunk: Annotated[bool, typer.Option(help="Keep all trunk blocks (for the truncation benchmark).")] = False,
           triton_repo: Annotated[Path | None, typer.Option(help="Also write a Triton model repository entry here.")] = None,
           json_out: Annotated[Path | None, typer.Option("--json", help="Write the manifest JSON here ('-' = stdout).")] = None) -> None:
    """Export a run to an engine dir: ONNX (truncated, timesteps baked in) → precision → backend, with a parity report."""
    writable(json_out)
    from dcube_edge import report
    from dcube_edge.export.build import ExportOptions
    from dcube_edge.export.build import export as run_export

    opts = ExportOptions(backend=backend, precision=precision, calibration=calibration,
                         calibration_size=calibration_size, data=str(data) if data else None, max_batch=max_batch,
                         full_trunk=full_trunk, triton_repo=str(triton_repo) if triton_repo else None)
    with err.status(f"exporting {backend}/{precision} …"):
        manifest = run_export(run, out_dir, opts, log=err.print)
    out.print(report.parity(out_dir, manifest))
    emit_json(manifest, json_out)


@app.command()
def calibrate(run: Annotated[Path, typer.Argument(help="Run directory (gives image size and seed).")],
              data: Annotated[Path, typer.Argument(help="Dataset folder; its training split is sampled.")],
              out_file: Annotated[Path, typer.Option("--out", "-o", help="Calibration .npz to write.")],
              size: Annotated[int, typer.Option(min=1, help="Images, stratified by class.")] = 256) -> None:
    """Build an INT8 calibration set (stratified, seeded, preprocessed like inference)."""
    from dcube_edge import rundir
    from dcube_edge.calibration import sets
    from dcube_edge.data import discover
    from dcube_edge.runtimes.preprocess import PreprocessSpec

    cfg = rundir.load_config(run)
    split = discover(data, cfg.val_fraction, cfg.split_seed).train
    sets.build(split.paths, split.labels, PreprocessSpec(cfg.image_size), size, cfg.seed, out_file)
    d = sets.describe(out_file)
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
    from dcube_edge.runtimes.signing import sign as sign_engine

    manifest = runtimes.read(engine)  # only a verified engine is signed
    record = sign_engine(manifest.path, key)
    out.print(f"signed {engine} with key {record['key_id']} ({engine / 'manifest.sig'})")


@app.command()
def serve(engine: Annotated[Path, typer.Argument(help="Engine directory to classify with.")],
          spool: Annotated[Path, typer.Option(help="Folder for received instances, rejected ones and the ledger.")],
          host: Annotated[str, typer.Option(help="Address to bind (non-loopback needs --token-file and --allow-ae).")] = "127.0.0.1",
          dicom_port: Annotated[int, typer.Option(min=1, max=65535, help="DICOM (C-STORE/C-ECHO) port.")] = 11112,
          ae_title: Annotated[str, typer.Option(help="This node's AE title.")] = "DCUBE",
          allow_ae: Annotated[str | None, typer.Option(help="Comma-separated calling AE titles to accept (default: any).")] = None,
          http_port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port (results, classify, healthz, metrics).")] = 8080,
          token_file: Annotated[Path | None, typer.Option(help="File holding the HTTP bearer token.")] = None,
          max_batch: Annotated[int, typer.Option(min=1, help="Largest batch the batcher forms.")] = 16,
          max_delay_ms: Annotated[int, typer.Option(min=0, help="Longest wait for a batch to fill.")] = 50,
          workers: Annotated[int, typer.Option(min=1, help="Threads decoding each batch's files.")] = 1,
          forward: Annotated[str | None, typer.Option(help="AE@HOST:PORT of a PACS: send each result there as a DICOM SR (retried until acknowledged).")] = None,
          reclassify: Annotated[bool, typer.Option("--reclassify", help="The spool holds another engine's results: classify everything again.")] = False,
          trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help="Refuse an engine not signed by this public key.")] = None) -> None:
    """A DICOM node on the workstation: the scanner sends (C-STORE), every acknowledged instance is classified
    once and kept in a ledger; results over HTTP (needs the `serve` extra)."""
    import re

    from dcube_edge.runtimes.serve import ServeOptions, Service

    token = None
    if token_file:
        try:
            token = token_file.read_text().strip()
        except OSError as e:
            fail(f"--token-file {token_file}: {e.strerror or e}")
        if len(token) < 16:
            fail(f"--token-file {token_file}: the token must be at least 16 characters")
    allowed = tuple(a.strip() for a in allow_ae.split(",") if a.strip()) if allow_ae is not None else ()
    if allow_ae is not None and not allowed:
        fail(f"--allow-ae {allow_ae!r} names no AE title: give the calling AE titles to accept, comma-separated")
    target = None
    if forward:
        found = re.fullmatch(r"([^@\s]{1,16})@([^:\s]+):(\d{1,5})", forward)
        if not found or not 0 < int(found.group(3)) < 65536:
            fail(f"--forward {forward!r}: expected AE@HOST:PORT, e.g. PACS@10.0.0.5:104")
        target = (found.group(1), found.group(2), int(found.group(3)))
    opts = ServeOptions(spool=spool, host=host, dicom_port=dicom_port, http_port=http_port, ae_title=ae_title,
                        allow_ae=allowed, token=token, max_batch=max_batch, max_delay_ms=max_delay_ms, workers=workers,
                        reclassify=reclassify, forward=target)
    service = Service(engine, opts, trusted_keys=trusted_key)
    out.print(f"serving {engine} — DICOM {ae_title}@{host}:{dicom_port}"
              f"{' (accepting ' + ', '.join(allowed) + ')' if allowed else ''}, HTTP http://{host}:{http_port} "
              f"— spool {spool} ({service.ledger.counts()})")
    service.run()


def expand_inputs(inputs: list[Path], recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files to classify and files passed over with the reason; folders are listed (``recursive``: nested
    ones too). A name the OS refuses (too long, ...) is kept as a file, to fail on its own."""
    from dcube_edge.runtimes.preprocess import scan

    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    nested: list[Path] = []
    for p in inputs:
        try:
            is_dir = p.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            images, passed, subfolders = scan(p, recursive)
            files += images
            skipped += passed
            nested += subfolders
        else:
            files.append(p)
    if nested and not files:
        fail(f"no images directly in the given folder(s), but sub-folders ({', '.join(n.name for n in nested[:4])}"
             f"{', ...' if len(nested) > 4 else ''}): pass --recursive to classify them")
    if nested:
        err.print(f"[yellow]note:[/] {len(nested)} sub-folder(s) not entered (pass --recursive to include them)")
    return files, skipped


TABLE_ROWS = 100  # above this many files, classify prints a summary instead of one row per file


@app.command()
def classify(engine: Annotated[Path, typer.Argument(help="Engine directory from `export`.")],
             inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
             batch_size: Annotated[int, typer.Option(min=1, help="Images per engine call.")] = 32,
             workers: Annotated[int, typer.Option(min=1, help="Threads decoding images.")] = 1,
             threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for the backend.")] = None,
             recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also classify images in nested folders.")] = False,
             trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help="Refuse engines not signed by this public key (repeatable; see `sign`).")] = None,
             json_out: Annotated[Path | None, typer.Option("--json", help="Write predictions JSON here ('-' = stdout).")] = None) -> None:
    """Classify images with an engine (no PyTorch needed). Streams in batches; exit 1 if any file could not
    be classified (the others still are)."""
    writable(json_out)
    from collections import Counter

    from rich.progress import Progress

    from dcube_edge import report, runtimes
    from dcube_edge.runtimes import isa
    from dcube_edge.runtimes.files import json_list_stream

    files, skipped = expand_inputs(inputs, recursive)
    if not files and not skipped:
        fail("no images found in the given inputs")
    clf = runtimes.load(engine, threads=threads, trusted_keys=trusted_key)
    to_stdout = json_out is not None and str(json_out) == "-"
    rows, failed, labels = [], [], Counter()
    head = {"engine": str(engine), "backend": clf.manifest.backend, "precision": clf.manifest.precision,
            "effective_precision": clf.manifest.data.get("effective_precision"), "classes": clf.classes}
    foreign = clf.manifest.foreign_build(isa.tag())
    if foreign:
        err.print(f"[yellow]note: {engine.name} was {escape(foreign)}[/]")
    timing: dict = {}  # filled in before the JSON closes
    with clf, json_list_stream(json_out, head, "predictions", tail=timing) as add, \
            Progress(console=err, transient=True, disable=len(files) <= batch_size) as progress:
        task = progress.add_task("classifying", total=len(files) + len(skipped))
        passed_over = [runtimes.Prediction(str(path), error=f"skipped: {why}") for path, why in skipped]
        for p in [*passed_over, *clf.classify(files, batch_size=batch_size, workers=workers)]:
            add(p.to_dict())
            (failed.append(p) if p.error else labels.update([p.label]))
            if len(files) + len(skipped) <= TABLE_ROWS and not to_stdout:
                rows.append(p)
            progress.advance(task)
        timing["engine_time"] = clf.engine_time()
    if not to_stdout:
        title = f"{engine.name}: {clf.manifest.backend} {clf.manifest.precision}"
        if rows:
            out.print(report.predictions(title, rows, clf.classes))
        else:
            out.print(report.prediction_counts(f"{title}: {len(files) + len(skipped)} files", labels, clf.classes,
                                               len(failed)))
            for p in failed[:10]:
                err.print(f"[red]{shown(p.path)}: {escape(p.error)}[/]")
        if failed:
            err.print(f"[red]{len(failed)} of {len(files) + len(skipped)} file(s) could not be classified[/]")
        err.print(f"computes in: {escape(clf.manifest.precision_parts())}")
        if timing["engine_time"]:
            err.print("engine time per call (median, decoding excluded): " + ", ".join(
                f"{t['p50_ms']:.2f} ms at batch {b} ({t['calls']} call{'s' * (t['calls'] > 1)})"
                for b, t in timing["engine_time"].items()))
        if json_out is not None:
            err.print(f"wrote {json_out}")
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def screen(json_out: Path | None) -> Console:
    """Where tables go: stdout, unless --json - has it (then stderr, so the JSON parses)."""
    return err if json_out is not None and str(json_out) == "-" else out


def show_metrics(title: str, m: dict, json_out: Path | None = None) -> None:
    from dcube_edge import report

    for table in report.metrics(title, m):
        screen(json_out).print(table)


@app.command()
def evaluate(target: Annotated[Path, typer.Argument(help="Engine directory, or a run directory (PyTorch FP32).")],
             data: Annotated[Path, typer.Argument(help="A split folder with one sub-folder per class.")],
             batch_size: Annotated[int, typer.Option(min=1, help="Images per engine call.")] = 64,
             threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for the backend.")] = None,
             bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for 95 % intervals (0 = none).")] = 1000,
             trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help="Refuse engines not signed by this public key (repeatable; see `sign`).")] = None,
             json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics JSON here ('-' = stdout).")] = None) -> None:
    """Accuracy, macro-F1, AUC (one-vs-rest for > 2 classes), per-class recall, confusion matrix, with
    bootstrap confidence intervals. Engines and the torch model are scored the same way."""
    writable(json_out)
    import numpy as np

    from dcube_edge import runtimes
    from dcube_edge.data import read_split
    from dcube_edge.metrics import bootstrap_ci, classification_report

    if (target / "config.json").is_file() and not (target / "manifest.json").is_file():
        from dcube_edge.torch_backend import TorchRunner

        runner, manifest = TorchRunner.from_run(target, threads=threads, max_batch=batch_size)
        clf = runtimes.Classifier(manifest, runner)
    else:
        clf = runtimes.load(target, threads=threads, trusted_keys=trusted_key)
    classes = clf.classes
    _, split = read_split(data, classes)
    with clf:
        preds = list(clf.classify(split.paths, batch_size=batch_size))
    bad = [p for p in preds if p.error]
    if bad:
        fail(f"{len(bad)} image(s) could not be read, e.g. {shown(bad[0].path)}: {bad[0].error}")
    probs = np.array([[p.probs[c] for c in classes] for p in preds])
    kind = {"backend": clf.manifest.backend, "precision": clf.manifest.precision}
    report = classification_report(split.labels, probs, classes)
    if bootstrap:
        report["ci95"] = bootstrap_ci(split.labels, probs, classes, n=bootstrap)
    predicted = {int(i) for i in probs.argmax(1)}
    if len(split.labels) > 1 and len(predicted) == 1:
        err.print(f"[yellow]warning:[/] every image was predicted {classes[predicted.pop()]!r}: the model has collapsed to "
                  "one class (too little training data or steps?)")
    report.update(target=str(target), data=str(data), **kind)
    show_metrics(f"{target.name} ({kind['backend']} {kind['precision']}) on {data}", report, json_out)
    emit_json(report, json_out)


@app.command()
def bench(targets: Annotated[list[Path], typer.Argument(help="Engine directories, or one run dir with --matrix.")],
          torch_run: Annotated[Path | None, typer.Option("--torch", help="Run dir: time PyTorch eager FP32 as the baseline.")] = None,
          matrix: Annotated[bool, typer.Option(help="Build (or reuse by hash) every available backend x precision of the run and time them all.")] = False,
          figures: Annotated[bool, typer.Option(help="Also measure the truncation and timestep-batching figures (needs a run).")] = False,
          calibration: Annotated[str | None, typer.Option(help="--matrix INT8 calibration data (default: the run's training data).")] = None,
          batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8",
          iterations: Annotated[int, typer.Option(min=1, help="Timed calls per cell.")] = 30,
          warmup: Annotated[int, typer.Option(min=0, help="Untimed calls first.")] = 5,
          threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for every backend and torch.")] = None,
          compile: Annotated[bool, typer.Option("--compile", help="Also time torch.compile of each PyTorch precision (where it works; about a minute of compiling per row).")] = False,
          device: Annotated[str, typer.Option(help="cpu | cuda (torch baseline device; cuda adds torch fp16).")] = "cpu",
          profile: Annotated[bool, typer.Option("--profile", help="Also time every engine per op type (OpenVINO PERF_COUNT, ONNX Runtime profiler) at the smallest batch.")] = False,
          serve: Annotated[str | None, typer.Option("--serve", help="Instead: load-test `serve` on the engine with these numbers of concurrent DICOM senders, e.g. 1,4,16.")] = None,
          per_sender: Annotated[int, typer.Option(min=1, help="--serve: instances each sender stores.")] = 16,
          vs_benchmark_app: Annotated[bool, typer.Option("--vs-benchmark-app", help="Also compare each OpenVINO engine's latency with OpenVINO's benchmark_app on the same IR (six paired rounds, median of their ratios; smallest batch).")] = False,
          trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help="Refuse engines not signed by this public key (repeatable; see `sign`).")] = None,
          json_out: Annotated[Path | None, typer.Option("--json", help="Write results JSON here ('-' = stdout).")] = None,
          csv_out: Annotated[Path | None, typer.Option("--csv", help="Write a CSV table here.")] = None,
          plot_out: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot (latency vs precision, log scale).")] = None) -> None:
    """Latency (p50/p90/p99), images/s, engine size and GFLOP/s per engine and batch size, with the speedup
    over PyTorch eager FP32 measured in the same run."""
    writable(json_out)
    writable(csv_out, "--csv")
    writable(plot_out, "--plot")
    from dcube_edge import report
    from dcube_edge.benchmark import BenchOptions, run_bench, write_outputs

    if serve:
        from dcube_edge.benchmark import serve_load
        from dcube_edge.runtimes.bench import machine_info

        if len(targets) != 1:
            fail("--serve takes exactly one engine directory")
        counts = ints(serve, option="--serve")
        with err.status("load-testing serve …") as status:
            rows = serve_load(targets[0], counts, per_sender, log=lambda m: status.update(m))
        for item in report.serve_load(targets[0], rows, machine_info()):
            out.print(item)
        emit_json({"machine": machine_info(), "engine": str(targets[0]), "serve_load": rows}, json_out)
        return
    matrix_run = None
    if matrix:
        if len(targets) != 1:
            fail("--matrix takes exactly one run directory")
        matrix_run, targets = targets[0], []
    if figures and not (matrix_run or torch_run):
        fail("--figures needs a run: pass --matrix RUN or --torch RUN")
    if trusted_key:
        from dcube_edge import runtimes

        for t in targets:
            runtimes.read(t, trusted_keys=trusted_key)
    opts = BenchOptions(batch_sizes=ints(batch_sizes, option='--batch-sizes'), iterations=iterations, warmup=warmup, threads=threads,
                        compile=compile, device=device, calibration=calibration, figures=figures, profile=profile,
                        vs_benchmark_app=vs_benchmark_app)
    with err.status("benchmarking …") as status:
        result = run_bench(list(targets), opts, torch_run=torch_run, matrix_run=matrix_run,
                           log=lambda m: status.update(m))
    for item in report.bench(result):
        out.print(item)
    for s in result["skipped"]:
        err.print(f"skipped {s}")
    write_outputs(result, json_out, csv_out, plot_out)
    emit_json(result, json_out if json_out is not None and str(json_out) == "-" else None)
    for path in (json_out, csv_out, plot_out):
        if path is not None and str(path) != "-":
            err.print(f"wrote {path}")


def main() -> None:
    """Console entry point. Exit codes: 0 success, 1 some inputs failed (the rest were processed), 2 user error
    (one red line; bad option values included), 3 internal error (with the --debug hint), 130 interrupted."""
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


if __name__ == "__main__":
    main()
