"""Training a run: the data read once, step 1 (:mod:`.step1`), Gaussianity layer selection, step 2
(:mod:`.step2`), the model picked on validation. Every epoch ends with an atomic checkpoint, so
``resume=True`` continues."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dcube_edge.errors import UserError
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.files import write_json
from dcube_edge.runtimes.preprocess import PreprocessSpec

from . import distributed, rundir, selection
from .config import GUIDE_BRANCHES, Config, option_of
from .data import Dataset, Split, audit, discover, read_split, same_classes
from .head import DCube
from .loop import predict_logits, seed_all
from .metrics import classification_report, collapse_warning, softmax
from .operating_point import at_operating_point_report
from .step1 import (
    Report,
    diffusion_steps_per_epoch,
    epoch_log,
    resolve_amp,
    reuse_trunk,
    train_diffusion,
    trunk_diagnosis,
    write_trunk_report,
)
from .step1 import reference_text as _reference_text
from .step2 import classifier_steps_per_epoch, train_classifier, validation_logits
from .uvit import UViT

Log = Callable[[str], None]


def resolve_budgets(cfg: Config, n_train: int) -> Config:
    """Turn ``--epochs-*`` into step budgets for this training set (steps are what runs and is recorded)."""
    changes = {}
    if cfg.epochs_diffusion is not None:
        changes["steps_diffusion"] = cfg.epochs_diffusion * diffusion_steps_per_epoch(cfg, n_train)
    if cfg.epochs_classifier is not None:
        changes["steps_classifier"] = cfg.epochs_classifier * classifier_steps_per_epoch(cfg, n_train)
    return cfg.replace(**changes)

def _quiet(phase: str, done: int, total: int, scalars: dict) -> None:
    pass

BUDGETS = ("steps_diffusion", "steps_classifier", "epochs_diffusion", "epochs_classifier")


def resume_config(out: Path, requested: Config, given: set[str]) -> tuple[Config, bool]:
    """(settings to continue ``out`` with, whether it is already finished with them). The saved
    ``config.json`` decides; budgets the user gave extend it; any other option given that differs from the
    saved value is refused (naming both), so a resume never mixes two recipes."""
    saved = rundir.load_config(out)
    conflicts = [f for f in sorted(given - set(BUDGETS)) if getattr(requested, f) != getattr(saved, f)]
    if conflicts:
        raise UserError(f"--resume continues {out} with its saved settings, and these options differ from them: "
                         + ", ".join(f"{option_of(f)} {getattr(requested, f)!r} "
                                     f"(saved {getattr(saved, f)!r})" for f in conflicts)
                         + "; drop them, or train into a new --out")
    budgets = {f: getattr(requested, f) for f in given & set(BUDGETS)}
    for phase in ("diffusion", "classifier"):  # an explicit step budget replaces a saved epoch budget
        if f"steps_{phase}" in budgets:
            budgets.setdefault(f"epochs_{phase}", None)
    cfg = saved.replace(**budgets)
    return cfg, cfg == saved and (out / rundir.METRICS).is_file()


def continuing(out: Path, requested: Config, resume: bool, given: set[str]) -> tuple[Config, bool]:
    """(settings to train ``out`` with, whether it is already finished with them), for `train` and `baseline`:
    a run already there is refused unless ``resume``, and resumed with :func:`resume_config`; ``given`` are the
    Config fields the user set (others are ignored)."""
    if not (out / rundir.CONFIG).exists():
        return requested, False
    if not resume:
        raise UserError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    return resume_config(out, requested, given & {f.name for f in dataclasses.fields(Config)})


def config_for(preset: str | None, trunk: Path | None, guide_branch: str = "preset", **fields: object) -> Config:
    """The Config `train` asks for: the preset (default: tiny, or the --trunk run's), a guide branch other than
    the preset's, a trunk to reuse (a run, or "random"), and the options given (None: the preset's value)."""
    random_trunk = trunk is not None and str(trunk) == "random"
    if preset is None:
        preset = rundir.load_config(trunk).preset if trunk and not random_trunk else "tiny"
    if guide_branch not in ("preset", *GUIDE_BRANCHES):
        raise UserError(f"unknown --guide-branch {guide_branch!r}; choose preset or {' or '.join(GUIDE_BRANCHES)}")
    return Config.from_preset(preset, **GUIDE_BRANCHES.get(guide_branch, {}), **fields,
                              trunk_from=("random" if random_trunk else str(trunk.resolve())) if trunk else None)


def run(data: str | Path, out: Path, cfg: Config, resume: bool, given: set[str], report: Report = _quiet,
        log: Log = print) -> dict | None:
    """What `dcube-edge train` does, under torchrun too: join the process group, refuse an existing run unless
    resuming, settle a resume's settings (:func:`resume_config`: ``given`` are the Config fields the user
    set), train. Returns the metrics, ``{}`` on ranks other than 0, or None when a resumed run is already
    finished with these settings."""
    given = given & {f.name for f in dataclasses.fields(Config)}  # options that set no field (--out, --json) aside
    distributed.setup()
    try:
        budgets = {f: getattr(cfg, f) for f in given & set(BUDGETS)}
        cfg, finished = continuing(out, cfg, resume, given)
        distributed.barrier()  # every rank has checked before rank 0 writes anything
        if finished:
            return None
        quiet = not distributed.is_main()
        return train(data, out, cfg, resume=resume, report=_quiet if quiet else report,
                     log=(lambda *_: None) if quiet else log, overrides=budgets)
    finally:
        distributed.cleanup()


def train(data: str | Path, out: str | Path, cfg: Config, resume: bool = False,
          report: Report = _quiet, log: Log = print, overrides: dict | None = None) -> dict:
    """Train a run from a dataset folder; returns ``metrics.json``'s content.

    With ``resume`` and a saved ``config.json``, the saved settings are used; ``overrides`` (options the
    user gave explicitly, e.g. a longer budget) are applied on top."""
    out = Path(out)
    if resume and (out / rundir.CONFIG).is_file():
        overrides = dict(overrides or {})
        for phase in ("diffusion", "classifier"):  # an explicit step budget replaces a saved epoch budget
            if f"steps_{phase}" in overrides:
                overrides.setdefault(f"epochs_{phase}", None)
        cfg = rundir.load_config(out).replace(**overrides)
    seed_all(cfg.seed)
    fixed_layers = selection.parse_choice(cfg.layer_choice, cfg.num_layers)  # bad --layers fails before any work
    cfg, ds, real, reused = read_data(data, cfg, log)
    spec = PreprocessSpec(cfg.image_size)
    x_train, x_val = ds.train.load(spec), ds.val.load(spec)
    cfg = resolve_budgets(cfg, len(x_train))
    if reused is None:
        cfg = cfg.replace(amp=resolve_amp(cfg))  # "auto" is recorded as what it chose on this machine
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        rundir.save_config(cfg, out)
    distributed.barrier()

    t0 = time.perf_counter()
    trunk, diff_hist, checks = step_1(cfg, out, ds, x_train, x_val, real, reused, report, resume, log)
    if not distributed.is_main():
        return {}  # step 2 and all writes belong to rank 0
    rundir.save_weights(trunk, out / rundir.DIFFUSION)
    t_diffusion = time.perf_counter() - t0
    trunk_report = write_trunk_report(out, cfg, trunk, checks, Path(data).name)
    best_probe = trunk_report["best_probe"]
    log(f"trunk: best probe AUC {best_probe['auc']:.3f} (layer {best_probe['layer']}, t={best_probe['timestep']}, "
        f"{best_probe['kind']}) vs pixel probe {trunk_report['pixel_probe']:.3f}; x0-MSE/variance at t=500 "
        f"{trunk_report['x0_ratio_t500']:.2f}{_reference_text(trunk_report)} (trunk.png)")
    cfg = select_layers(cfg, out, trunk, x_train, real, fixed_layers, Path(data).name, log)

    t1 = time.perf_counter()
    model = DCube(cfg, len(ds.classes))
    model.trunk.load_state_dict(trunk.state_dict())
    if cfg.resnet_weights:
        model.head.resnet.load_local_weights(cfg.resnet_weights)
    best, cls_hist = train_classifier(cfg, model, x_train, ds.train.labels, x_val, ds.val.labels,
                                      out / "state" / "classifier.pt", report, resume)
    rundir.save_weights(model.head, out / rundir.CLASSIFIER)
    t_classifier = time.perf_counter() - t1

    logits = validation_logits(model, x_val, cfg)
    val = classification_report(ds.val.labels, softmax(logits), list(ds.classes))
    if warning := collapse_warning(val):
        log(warning)
    metrics = {"validation": val, "validation_at_operating_point": at_operating_point_report(
                   logits, ds.val.labels, list(ds.classes)), "best_epoch": best["epoch"], "val_source": ds.val_source,
               "world_size_step1": distributed.world_size(),
               "seconds": {"diffusion": round(t_diffusion, 1), "classifier": round(t_classifier, 1)},
               "threads": torch.get_num_threads(), "cpu": isa.describe(),
               "trunk": {k: trunk_report[k] for k in ("best_probe", "pixel_probe", "x0_ratio_t500")},
               "history": {"diffusion": diff_hist, "classifier": cls_hist}}
    if cfg.random_t:  # what an exported engine (fixed timesteps) of this model gives
        metrics["validation_fixed_t"] = classification_report(
            ds.val.labels, softmax(predict_logits(model, x_val)), list(ds.classes))
    write_json(out / rundir.METRICS, metrics)
    return metrics


def read_data(data: str | Path, cfg: Config, log: Log) -> tuple[Config, Dataset, int, UViT | None]:
    """The dataset's splits (synthetic images appended to training only), its audit warnings, and a reused
    trunk (checked before anything is written). (config with the data recorded, dataset, real training
    images, reused trunk or None)."""
    ds = discover(data, cfg.val_fraction, cfg.split_seed)
    same_classes(cfg.classes, ds.classes, data)
    cfg = cfg.replace(classes=tuple(ds.classes), data_root=str(Path(data).resolve()), val_source=ds.val_source)
    k, real = len(ds.classes), len(ds.train)  # synthetic images are appended after the real ones
    reused = reuse_trunk(cfg) if cfg.trunk_from else None
    if reused is not None:  # the run samples (augment) as its trunk was trained
        cfg = cfg.replace(input_skip=reused.input_skip)
    if cfg.synthetic:
        _, synth = read_split(Path(cfg.synthetic), list(ds.classes))
        ds.train = Split(ds.train.paths + synth.paths, np.concatenate([ds.train.labels, synth.labels]),
                         ds.train.views + synth.views)
        cfg = cfg.replace(synthetic=str(Path(cfg.synthetic).resolve()), synthetic_counts=tuple(synth.counts(k)))
        log(f"synthetic: {len(synth)} images from {cfg.synthetic} {synth.counts(k)} added to training only")
    log(f"data: {len(ds.train)} train {ds.train.counts(k)}, {len(ds.val)} val {ds.val.counts(k)} "
        f"({ds.val_source}); classes {', '.join(ds.classes)}")
    for warning in audit(ds):
        log(f"warning: {warning}")
    return cfg, ds, real, reused


def step_1(cfg: Config, out: Path, ds: Dataset, x_train: np.ndarray, x_val: np.ndarray, real: int,
           reused: UViT | None, report: Report, resume: bool, log: Log) -> tuple[UViT, list[dict], list[dict]]:
    """The trunk: reused, or trained with its diagnostics; (trunk, history, diagnostics checkpoints)."""
    diagnose = trunk_diagnosis(cfg, x_train[:real], ds.train.labels[:real], x_val, ds.val.labels)
    if reused is not None:
        log(f"step 1 skipped: trunk {'randomly initialised' if cfg.trunk_from == 'random' else 'reused from ' + cfg.trunk_from}")
        return reused, [], [{"step": 0, **diagnose(reused, 0)}]
    log(f"step 1: {cfg.steps_diffusion} steps of {cfg.batch_size} images, autocast {cfg.amp}, "
        f"EMA {cfg.ema_decay or 'off'}, lr {cfg.diffusion_lr or cfg.lr:g} ({cfg.lr_schedule}), "
        f"{f'min-SNR-{cfg.min_snr_gamma:g}' if cfg.min_snr_gamma > 0 else 'uniform'} ε weights, CPU {isa.describe()}")
    return train_diffusion(cfg, x_train, ds.train.labels, out / "state" / "diffusion.pt", report, resume,
                           log=epoch_log(out, log, cfg.steps_diffusion), diagnose=diagnose)


def select_layers(cfg: Config, out: Path, trunk: UViT, x_train: np.ndarray, real: int,
                  fixed_layers: tuple[int, ...] | None, dataset: str, log: Log) -> Config:
    """The Gaussianity test on real images only, drawn with the split seed (the layers are a property of the
    trunk and the data, not of the step-2 seed: a seed-drawn 256-image sample picked 44 different sets);
    ``selection.json`` and its plot written; the config with the selected layers (saved)."""
    sample = np.sort(np.random.default_rng(cfg.split_seed).permutation(real)[: cfg.selection_samples])
    features = selection.layer_features(trunk, x_train[sample], cfg.timesteps)
    pvals = selection.layer_pvalues(features)
    frequency = selection.stability(features, cfg.p_threshold, cfg.max_layers, seed=cfg.split_seed)
    layers = fixed_layers or selection.select(pvals, cfg.p_threshold, cfg.max_layers)
    cfg = cfg.replace(selected_layers=layers)
    write_json(out / rundir.SELECTION, {
        "test": "D'Agostino-Pearson (scipy.stats.normaltest) on the first principal component of "
                "token- and timestep-averaged layer features",
        "samples": int(len(sample)), "timesteps": list(cfg.timesteps), "threshold": cfg.p_threshold,
        "max_layers": cfg.max_layers, "p_values": [float(p) for p in pvals], "layer_choice": cfg.layer_choice,
        "selected_layers": list(layers), "sample_seed": cfg.split_seed,
        "frequency_on_halves": frequency and {"draws": 50, "per_layer": [round(f, 3) for f in frequency]}})
    how = "Gaussianity selection" if fixed_layers is None else f"--layers {cfg.layer_choice}"
    selection.plot(pvals, layers, cfg.p_threshold, out / "selection.png",
                   f"{how} on {dataset}: layers {list(layers)}", frequency)
    rundir.save_config(cfg, out)
    stable = (f"; picked on {', '.join(f'{frequency[i]:.0%}' for i in layers)} of random halves of the "
              f"{len(sample)} images" if frequency else "")
    log(f"{how}: layers {list(layers)} (p = {', '.join(f'{pvals[i]:.2g}' for i in layers)}{stable})")
    return cfg


def init(out: Path, preset: str, classes: tuple[str, ...], layers: tuple[int, ...] | None,
         seed: int) -> tuple[Config, tuple[int, ...]]:
    """`dcube-edge init`: a random-weight run of ``preset`` for these class names (default layers: the
    reference's breast layers 4,5, clipped to the preset). Returns its config and layers."""
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(classes):
        raise UserError("--classes needs at least two distinct, non-empty names")
    unsafe = [n for n in classes if n in (".", "..") or any(ch in n for ch in "/\\\0")]
    if unsafe:
        raise UserError(f"class names become folder names and may not contain path separators: {unsafe}")
    if (out / rundir.CONFIG).exists():
        raise UserError(f"{out} already holds a run; init would overwrite its weights (choose another directory)")
    cfg = Config.from_preset(preset, seed=seed, classes=classes)
    layers = layers or tuple(i for i in (4, 5) if i < cfg.num_layers) or (cfg.depth,)
    init_run(out, cfg, layers)
    return cfg, layers


def init_run(out: str | Path, cfg: Config, layers: tuple[int, ...]) -> None:
    """A run dir with random weights, for export and benchmark rehearsals."""
    out = Path(out)
    if any(not 0 <= i < cfg.num_layers for i in layers):
        raise UserError(f"layers {list(layers)} out of range 0..{cfg.num_layers - 1} for preset {cfg.preset}")
    seed_all(cfg.seed)
    cfg = cfg.replace(selected_layers=tuple(sorted(layers)), val_source="none (random init)")
    model = DCube(cfg, len(cfg.classes)).eval()
    out.mkdir(parents=True, exist_ok=True)
    rundir.save_config(cfg, out)
    rundir.save_weights(model.trunk, out / rundir.DIFFUSION)
    rundir.save_weights(model.head, out / rundir.CLASSIFIER)
