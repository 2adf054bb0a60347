"""`train`, `baseline`, `init`, `augment`, `demo-data`: parse the options, call the library, render."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcube_edge.config import Config

from .common import (
    app,
    emit_json,
    err,
    fail,
    ints,
    out,
    resumable_progress,
    show_metrics,
    typed_options,
    writable,
)

JSON = "Write metrics JSON here ('-' = stdout)."


@app.command("demo-data")
def demo_data(out_dir: Annotated[Path, typer.Argument(help="Folder to write <class>/*.png into.")],
              per_class: Annotated[int, typer.Option(min=1, help="Training images per class.")] = 60,
              val_per_class: Annotated[int, typer.Option(min=0, help="If > 0, write train/ and val/ splits.")] = 0,
              size: Annotated[int, typer.Option(min=8, help="Image side in pixels.")] = 64,
              seed: int = 0,
              dicom: Annotated[bool, typer.Option("--dicom", help="Write DICOM secondary-capture files (.dcm) instead of PNG, e.g. to send to `serve`.")] = False,
              screen: Annotated[str | None, typer.Option(help="With --dicom: ultrasound objects like a scanner's: the phantom in the tissue region of an annotated 640x480 screen, as rgb (native RGB) | jpeg (YBR_FULL_422 JPEG baseline).")] = None,
              frames: Annotated[int, typer.Option(min=1, max=1000, help="With --screen: frames per object; over 1, a cine loop (US Multi-frame).")] = 1,
              views: Annotated[int, typer.Option(min=1, max=2, help="With --screen: tissue regions side by side (2: a dual view).")] = 1) -> None:
    """Write the built-in synthetic ultrasound phantoms (benign, malignant, normal)."""
    from dcube_edge.phantoms import write_demo
    from dcube_edge.scanner import SCREENS, layout

    if screen is not None and screen not in SCREENS:
        fail(f"--screen {screen}: the demo writes {' or '.join(SCREENS)} screens")
    if screen is not None and not dicom:
        fail(f"--screen {screen}: screens are DICOM objects: add --dicom")
    if screen is None and (frames > 1 or views > 1):
        fail("--frames and --views describe --screen objects: add --dicom --screen rgb|jpeg")
    if screen is not None:
        try:
            layout(size, views)
        except ValueError as e:
            fail(f"--size {size} --views {views}: {e}")
    counts = write_demo(out_dir, per_class, size, seed, val_per_class, dicom=dicom, screen=screen, frames=frames, views=views)
    what = f"{screen} ultrasound objects" + (f" of {frames} frames" if frames > 1 else "") if screen else "phantom images"
    out.print(f"wrote {sum(counts.values())} {what} to {out_dir} ({', '.join(f'{k}: {v}' for k, v in counts.items())})")


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
          seed: Annotated[int, typer.Option(help="Seed for splits, init and sampling.")] = Config.seed,
          resnet_weights: Annotated[Path | None, typer.Option(help="Local ResNet-50 weights (.safetensors/.pth).")] = None,
          synthetic: Annotated[Path | None, typer.Option(help="Folder from `dcube-edge augment` to mix into training (never into validation).")] = None,
          layers: Annotated[str, typer.Option(help="Trunk layers for the head: gaussianity (the test) | all | last | indices, e.g. 4,5.")] = Config.layer_choice,
          random_t: Annotated[bool, typer.Option("--random-t", help="Step 2 as the reference: a random t per image at training and validation (engines still use --timesteps).")] = Config.random_t,
          trunk: Annotated[Path | None, typer.Option(help="Reuse this run's trained step-1 trunk (or 'random': an untrained one); train only layer selection and step 2.")] = None,
          ema_decay: Annotated[float | None, typer.Option(help="Step-1 EMA decay of the trunk weights (0.999; 0 turns EMA off).")] = None,
          lr_schedule: Annotated[str | None, typer.Option(help="Step-1 lr after warmup: cosine (to 10 %) | constant (the reference) | wsd (constant, then cosine to 10 % over the last quarter).")] = None,
          guide_loss_weight: Annotated[float | None, typer.Option(help="Step 2: weight of a cross-entropy on the guide branch's pooled map (training only; 0 = the reference).")] = None,
          class_weights: Annotated[str | None, typer.Option(help="Step-2 cross-entropy class weights: balanced (inverse frequency, the default) | none (the reference).")] = None,
          guide_branch: Annotated[str, typer.Option(help="Step-2 ResNet guide branch: preset (small: ResNet-18 layout; tiny, paper: ResNet-50 layout) | resnet18 (basic blocks, width 64) | narrow-resnet50 (ResNet-50 layout at width 16).")] = "preset",
          contrastive_weight: Annotated[float | None, typer.Option(help="Weight of step 1's margin contrastive loss (1; 0 turns it off).")] = None,
          min_snr_gamma: Annotated[float | None, typer.Option(help="Step-1 ε-loss weight min(SNR, γ)/SNR per timestep (0 = off, the reference; 5 is the usual γ).")] = None,
          diffusion_lr: Annotated[float | None, typer.Option(help="Step-1 peak learning rate (default: the preset's lr, 2e-4).")] = None,
          input_skip: Annotated[bool | None, typer.Option("--input-skip/--no-input-skip", help="Trunk predicts ε as a correction to the linear estimate g(t)·x_t (EDM-style skip; features and engines unchanged).")] = None,
          amp: Annotated[str, typer.Option(help="Step-1 autocast: auto (bf16 where the CPU/GPU has it and the trunk is wide enough to gain) | none | bf16 | fp16 (GPU).")] = Config.amp,
          grad_accum: Annotated[int, typer.Option(min=1, help="Step-1 batches per optimizer step.")] = Config.grad_accum,
          resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")] = False,
          json_out: Annotated[Path | None, typer.Option("--json", help=JSON)] = None) -> None:
    """Train step 1 (diffusion trunk), select layers, train step 2 (head); pick the model on validation.
    Multi-process: torchrun --nproc-per-node N -m dcube_edge.cli train ... (step 1 runs data-parallel)."""
    writable(json_out)
    from dcube_edge.config import fields_of
    from dcube_edge.train import config_for, run

    cfg = config_for(preset, trunk, guide_branch, steps_diffusion=steps_diffusion, steps_classifier=steps_classifier,
                     epochs_diffusion=epochs_diffusion, epochs_classifier=epochs_classifier, ema_decay=ema_decay,
                     lr_schedule=lr_schedule, guide_loss_weight=guide_loss_weight, class_weights=class_weights,
                     batch_size=batch_size, seed=seed, timesteps=ints(timesteps, 0, "--timesteps") if timesteps else None,
                     resnet_weights=str(resnet_weights) if resnet_weights else None,
                     synthetic=str(synthetic) if synthetic else None, amp=amp, grad_accum=grad_accum, layer_choice=layers,
                     random_t=random_t, contrastive_weight=contrastive_weight, min_snr_gamma=min_snr_gamma,
                     diffusion_lr=diffusion_lr, input_skip=input_skip)
    given = {f for name in typed_options(ctx) for f in fields_of(name)}
    with resumable_progress("train", data, out_dir) as (report, log):
        metrics = run(data, out_dir, cfg, resume, given, report, log)
    if metrics is None:
        out.print(f"{out_dir} is already finished with these settings; nothing changed "
                  "(give a larger --steps-* budget to continue training it)")
    elif metrics:  # rank 0
        show_metrics("validation", metrics["validation"], json_out)
        out.print(f"run written to {out_dir} (best epoch {metrics['best_epoch']}; "
                  f"{metrics['seconds']['diffusion']:.0f}s diffusion + {metrics['seconds']['classifier']:.0f}s classifier)")
        emit_json(metrics, json_out)


@app.command()
def baseline(ctx: typer.Context, data: Annotated[Path, typer.Argument(help="Dataset folder, as for `train`.")],
             out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
             model: Annotated[str, typer.Option(help="resnet18 | resnet50 | branch (D-Cube's own ResNet guide branch alone)")] = "resnet18",
             preset: Annotated[str, typer.Option(help="Preset giving image size, batch and optimiser (as D-Cube's).")] = "small",
             steps: Annotated[int | None, typer.Option(help="Training steps (default: the preset's step-2 budget).")] = None,
             epochs: Annotated[int | None, typer.Option(help="Epochs instead of steps.")] = None,
             class_weights: Annotated[str, typer.Option(help="Cross-entropy class weights: balanced (inverse frequency, the default) | none.")] = Config.class_weights,
             seed: int = Config.seed,
             resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out from its last complete epoch.")] = False,
             json_out: Annotated[Path | None, typer.Option("--json", help=JSON)] = None) -> None:
    """Train a plain CNN on the same splits and preprocessing as D-Cube (a baseline column for results)."""
    writable(json_out)
    from dcube_edge.baseline import train_baseline
    from dcube_edge.train import continuing

    cfg = Config.from_preset(preset, model=model, steps_classifier=steps, epochs_classifier=epochs, seed=seed,
                             class_weights=class_weights)
    fields = {"steps": "steps_classifier", "epochs": "epochs_classifier"}
    given = {fields.get(name, name) for name in typed_options(ctx)}
    cfg, finished = continuing(out_dir, cfg, resume, given)
    if finished:
        out.print(f"{out_dir} is already finished with these settings; nothing changed "
                  "(give a larger --steps or --epochs to continue training it)")
        return
    with resumable_progress("baseline", data, out_dir) as (report, log):
        metrics = train_baseline(data, out_dir, cfg, report=report, log=log, resume=resume)
    show_metrics(f"{model} validation", metrics["validation"], json_out)
    emit_json(metrics, json_out)


@app.command()
def init(out_dir: Annotated[Path, typer.Argument(help="Run directory to create.")],
         preset: Annotated[str, typer.Option(help="tiny | small | paper")] = "paper",
         classes: Annotated[str, typer.Option(help="Comma-separated class names.")] = "benign,malignant,normal",
         layers: Annotated[str | None, typer.Option(help="Selected layers (default: the reference's breast layers 4,5, clipped to the preset).")] = None,
         seed: int = Config.seed) -> None:
    """A run dir with random weights, to rehearse export and benchmarks without training."""
    from dcube_edge.train import init as init_run

    chosen = ints(layers, 0, "--layers") if layers else None
    cfg, chosen = init_run(out_dir, preset, tuple(c.strip() for c in classes.split(",")), chosen, seed)
    out.print(f"random-weight {preset} run written to {out_dir} (layers {list(chosen)}, classes {', '.join(cfg.classes)})")


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

    from dcube_edge.augment import augment as run_augment

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("sampling", total=None)
        result = run_augment(run, out_dir, None if balance else num_synthetic, sampler, steps, seed, batch_size,
                             data=str(data) if data else None,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    out.print(f"wrote {result['written']} new image(s) to {out_dir} ({', '.join(f'{c}: {n}' for c, n in result['counts'].items())} "
              f"requested; {sampler}, {result['steps']} steps per image)")
