"""Training: step 1 (class-conditional U-ViT, DDPM ε loss + margin contrastive loss), Gaussianity
layer selection, step 2 (frozen trunk at fixed timesteps + fused head, CE + flip consistency, model
picked on validation). Every epoch ends with an atomic checkpoint, so ``resume=True`` continues."""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dcube_edge.errors import Diverged, UserError
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.files import atomic_path, write_json
from dcube_edge.runtimes.preprocess import PreprocessSpec

from . import diagnostics, distributed, rundir, selection
from .config import Config
from .data import Split, audit, discover, read_split
from .diffusion import Schedule, eps_loss, margin_contrastive, min_snr_weights
from .head import DCube
from .loop import class_weights, on_device, optimizer_step, predict_logits, seed_all
from .metrics import auc, classification_report, collapse_warning, macro_f1, selection_score, softmax
from .uvit import UViT

Report = Callable[[str, int, int, dict], None]  # (phase, done, total, scalars)
AMP = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _save_state(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path) -> dict | None:
    """A training checkpoint: tensors and plain containers only (``weights_only``), never objects."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for foreign objects, RuntimeError for corrupt archives
        raise rundir.RunError(f"{path} is not a dcube-edge checkpoint of plain tensors ({type(e).__name__}); "
                              "refusing to load it: delete it to restart that step") from None


def pick_partners(labels: torch.Tensor, anchors: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A partner per anchor: same class with p = 0.5, else another class (uniformly), then an image of
    that class (uniformly). Tensor ops only. Returns (partners, different)."""
    k = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=k)
    order = torch.argsort(labels, stable=True)  # images grouped by class
    offsets = torch.cumsum(counts, 0) - counts
    mine = labels[anchors]
    different = (torch.rand(len(anchors), generator=g) < 0.5) & (k > 1)
    shift = torch.randint(1, max(k, 2), (len(anchors),), generator=g)  # another class, uniformly
    cls = torch.where(different, (mine + shift) % k, mine)
    different = cls != mine
    pick = (torch.rand(len(anchors), generator=g) * counts[cls]).long().clamp(max=counts[cls] - 1)
    return order[offsets[cls] + pick], different


def resolve_budgets(cfg: Config, n_train: int) -> Config:
    """Turn ``--epochs-*`` into step budgets for this training set (steps are what runs and is recorded)."""
    changes = {}
    if cfg.epochs_diffusion is not None:
        changes["steps_diffusion"] = cfg.epochs_diffusion * diffusion_steps_per_epoch(cfg, n_train)
    if cfg.epochs_classifier is not None:
        changes["steps_classifier"] = cfg.epochs_classifier * classifier_steps_per_epoch(cfg, n_train)
    return cfg.replace(**changes)


def diffusion_steps_per_epoch(cfg: Config, n_train: int) -> int:
    """Step 1 draws batch_size/2 anchors per step, each with a partner."""
    return max(1, n_train // max(1, cfg.batch_size // 2))


def classifier_steps_per_epoch(cfg: Config, n_train: int) -> int:
    return max(1, -(-n_train // cfg.batch_size))


WSD_DECAY = 0.25  # "wsd": the share of the step-1 budget spent decaying the lr


def lr_factor(cfg: Config, step: int) -> float:
    """Linear warmup, then cosine decay to 10 %, constant, or "wsd": constant, then cosine to 10 % over the last quarter."""
    warm = cfg.warmup_steps or max(1, cfg.steps_diffusion // 20)
    if step < warm:
        return (step + 1) / warm
    if cfg.lr_schedule == "constant":
        return 1.0
    start = warm if cfg.lr_schedule == "cosine" else max(warm, round(cfg.steps_diffusion * (1 - WSD_DECAY)))
    progress = max(0.0, (step - start) / max(1, cfg.steps_diffusion - start))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def ema_model(trunk: UViT, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """EMA of the trunk with the usual warmup: the decay is min(decay, (1 + n) / (10 + n)) at update n."""

    def avg(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged + (current - averaged) * (1.0 - d)

    return torch.optim.swa_utils.AveragedModel(trunk, avg_fn=avg, use_buffers=True)


def resolve_amp(cfg: Config) -> str:
    if cfg.amp == "auto":
        return isa.training_autocast(cfg.width, cuda=torch.cuda.is_available())
    if cfg.amp not in AMP:
        raise UserError(f"unknown --amp {cfg.amp!r}; choose auto, {', '.join(AMP)}")
    return cfg.amp


Diagnose = Callable[[UViT, int], dict]


def train_diffusion(cfg: Config, images: np.ndarray, labels: np.ndarray, state_path: Path,
                    report: Report, resume: bool, log: Callable[[str], None] = lambda _: None,
                    diagnose: Diagnose | None = None) -> tuple[UViT, list[dict], list[dict]]:
    """Step 1 for ``cfg.steps_diffusion`` steps. Returns (trunk to use: the EMA weights when EMA is on,
    per-epoch history, diagnostics checkpoints). A checkpoint is written at every epoch end."""
    dev = distributed.device()
    trunk = UViT(cfg, len(cfg.classes)).to(dev)
    ema = ema_model(trunk, cfg.ema_decay) if cfg.ema_decay > 0 else None
    peak = cfg.diffusion_lr or cfg.lr
    opt = torch.optim.AdamW(trunk.parameters(), lr=peak, weight_decay=0.01)  # fixed: every trunk measured used it
    schedule, history, checks, step = Schedule(cfg), [], [], 0
    snr_weight = min_snr_weights(schedule, cfg.min_snr_gamma).to(dev)
    amp = resolve_amp(cfg)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    if resume and (state := _load_state(state_path)):
        trunk.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        history, checks = list(state["history"]), json.loads(state.get("checks", "[]"))
        # checkpoints of dcube-edge before step budgets counted epochs
        step = int(state["step"]) if "step" in state else int(state["epoch"]) * diffusion_steps_per_epoch(cfg, len(images))
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    half = max(1, cfg.batch_size // 2)
    per_epoch = diffusion_steps_per_epoch(cfg, len(images))
    world = distributed.world_size()
    model = distributed.wrap(trunk)
    accum = max(1, cfg.grad_accum)
    pixels = float(np.prod(images.shape[1:]))
    checkpoints = diagnostic_steps(cfg.steps_diffusion)
    g = rate = None
    totals = {"eps": 0.0, "contrastive": 0.0}
    seen, t_epoch = 0, time.perf_counter()
    while step < cfg.steps_diffusion:
        epoch, s = divmod(step, per_epoch)
        if g is None or s == 0:  # each epoch's draws come from its own seeded generator (resume-exact)
            g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            perm = torch.randperm(len(images), generator=g)
            totals, seen, t_epoch = {"eps": 0.0, "contrastive": 0.0}, 0, time.perf_counter()
        trunk.train()
        for group in opt.param_groups:
            group["lr"] = peak * lr_factor(cfg, step)
        # The global batch is drawn identically on every rank; each rank trains on its slice of pairs.
        anchors = perm[s * half:(s + 1) * half]
        partners, different = pick_partners(y_all, anchors, g)
        n = len(anchors)
        idx = torch.cat([anchors, partners])
        flip = torch.rand(2 * n, generator=g) < 0.5
        t = torch.randint(0, schedule.steps, (n,), generator=g).repeat(2)
        noise = torch.randn((n, *x_all.shape[1:]), generator=g).repeat(2, 1, 1, 1)
        drop = torch.rand(2 * n, generator=g) < cfg.p_uncond
        mine = torch.arange(distributed.rank(), n, world)
        rows = torch.cat([mine, n + mine])
        x0 = x_all[idx[rows]]
        x0 = torch.where(flip[rows, None, None, None], x0.flip(-1), x0).to(dev)
        t, noise = t[rows].to(dev), noise[rows].to(dev)
        with torch.autocast(dev.type, dtype=AMP[amp], enabled=amp != "none"):
            eps, mid = model(schedule.q_sample(x0, t, noise), t, y_all[idx[rows]].to(dev), drop[rows].to(dev))
        l_eps = eps_loss(eps.float(), noise)  # logged unweighted, so curves compare across weightings
        l_fit = eps_loss(eps.float(), noise, snr_weight[t]) if cfg.min_snr_gamma > 0 else l_eps
        l_con = margin_contrastive(mid[: len(mine)].float(), mid[len(mine):].float(), different[mine].to(dev), cfg.margin)
        loss = l_fit + cfg.contrastive_weight * l_con
        if not torch.isfinite(loss):
            raise Diverged(f"diffusion loss became {loss.item()} at step {step + 1}; "
                                     "the last good checkpoint is kept, but --resume would repeat the recipe: "
                                     "train into a new --out with a lower --diffusion-lr (or --amp none)")
        scaler.scale(loss / accum).backward()
        if (s + 1) % accum == 0 or s + 1 == per_epoch or step + 1 == cfg.steps_diffusion:
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(trunk.parameters(), cfg.grad_clip * pixels)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(trunk)
        step, seen = step + 1, seen + 1
        totals["eps"] += (l_eps.item() / pixels - totals["eps"]) / seen  # running means of this epoch
        totals["contrastive"] += (l_con.item() - totals["contrastive"]) / seen
        rate = seen / max(1e-9, time.perf_counter() - t_epoch)
        report("diffusion", step, cfg.steps_diffusion,
               {"epoch": epoch + 1, "eps/px": totals["eps"], "con": totals["contrastive"], "steps/s": rate})
        if step in checkpoints and diagnose is not None and distributed.is_main():
            t_diag = time.perf_counter()
            checks.append({"step": step, **diagnose(ema.module if ema is not None else trunk, step)})
            log(diagnostics.summary(checks[-1]))
            t_epoch += time.perf_counter() - t_diag  # steps/s counts training only
        if s + 1 == per_epoch or step == cfg.steps_diffusion:
            row = {"epoch": epoch + 1, "step": step, **distributed.mean(totals), "lr": peak * lr_factor(cfg, step - 1),
                   "steps_per_s": round(rate, 3)}
            history.append(row)
            log(f"epoch {row['epoch']} step {step}/{cfg.steps_diffusion} eps/px {row['eps']:.4f} "
                f"contrastive {row['contrastive']:.4f} lr {row['lr']:.2e} {rate:.2f} steps/s")
            if distributed.is_main():
                _save_state(state_path, model=trunk.state_dict(), opt=opt.state_dict(), step=step, history=history,
                            ema=ema.state_dict() if ema is not None else {}, checks=json.dumps(checks))
            distributed.barrier()
    final = ema.module if ema is not None else trunk
    return final.eval(), history, checks


def diagnostic_steps(total: int, count: int = 5) -> set[int]:
    """Steps at which the trunk is diagnosed: ``count`` evenly spaced, the last at the end."""
    return {max(1, round(total * (i + 1) / count)) for i in range(count)}


@torch.no_grad()
def _cached_features(model: DCube, images: np.ndarray, batch: int = 64) -> list[torch.Tensor]:
    """Selected trunk features (T, N, tokens, width) per layer: the trunk is frozen and t is fixed."""
    per_layer: list[list[torch.Tensor]] = [[] for _ in model.layers_used]
    t = model.timesteps.shape[0]
    dev = next(model.parameters()).device
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(dev)
        for k, f in enumerate(model.features(x)):
            per_layer[k].append(f.unflatten(0, (t, x.shape[0])).cpu())  # the cache lives in host memory
    return [torch.cat(p, dim=1) for p in per_layer]


def random_timesteps(cfg: Config, n: int, generator: torch.Generator) -> torch.Tensor:
    """The reference's random t: one per image, uniform in [1, max(timesteps)], as a (1, n) tensor."""
    return torch.randint(1, max(cfg.timesteps) + 1, (1, n), generator=generator)


@torch.no_grad()
def predict_logits_random_t(model: DCube, images: np.ndarray, cfg: Config, batch: int = 64) -> np.ndarray:
    """Validation as the reference does it: a random t per image (seeded, so reruns agree)."""
    model.eval()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + 90_000)
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(dev)
        feats = model.features(x, random_timesteps(cfg, len(x), g).to(dev))
        out.append(model.head(feats, x, 1).float().cpu().numpy())
    return np.concatenate(out)


def validation_logits(model: DCube, images: np.ndarray, cfg: Config) -> np.ndarray:
    return predict_logits_random_t(model, images, cfg) if cfg.random_t else predict_logits(model, images)


def train_classifier(cfg: Config, model: DCube, x_train: np.ndarray, y_train: np.ndarray,
                     x_val: np.ndarray, y_val: np.ndarray, state_path: Path, report: Report,
                     resume: bool) -> tuple[dict, list[dict]]:
    dev = distributed.device()
    model.to(dev)
    for p in model.trunk.parameters():
        p.requires_grad_(False)
    model.trunk.eval()
    opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    best: dict = {"auc": -1.0, "epoch": 0, "state": copy.deepcopy(model.head.state_dict())}
    start = 0
    if resume and (state := _load_state(state_path)):
        model.head.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        history, start = list(state["history"]), int(state["epoch"])
        best = {"auc": float(state["best_auc"]), "epoch": int(state["best_epoch"]), "state": state["best"]}
    both = np.ascontiguousarray(np.concatenate([x_train, x_train[..., ::-1]]))
    feats = None if cfg.random_t else _cached_features(model, both)
    n, t = len(x_train), model.timesteps.shape[0]
    x_t, y_t = torch.from_numpy(both), torch.from_numpy(y_train)
    steps = classifier_steps_per_epoch(cfg, n)
    epochs = max(1, -(-cfg.steps_classifier // steps))  # validation (model selection) at every epoch end
    ce = nn.CrossEntropyLoss(weight=on_device(class_weights(cfg, y_train), dev))
    for epoch in range(start, epochs):
        model.head.train()
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + 50_000 + epoch)
        torch.manual_seed(cfg.seed * 100_003 + 70_000 + epoch)  # dropout
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for s in range(steps):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            idx2 = torch.cat([idx, idx + n])  # image and its horizontal flip
            x = x_t[idx2].to(dev)
            if feats is None:  # random t per image: the trunk runs every step
                with torch.no_grad():
                    f = model.features(x, random_timesteps(cfg, len(idx2), g).to(dev))
                logits = model.head(f, x, 1)
            else:
                logits = model.head([layer[:, idx2].flatten(0, 1).to(dev) for layer in feats], x, t)
            plain, flipped = logits[: len(idx)], logits[len(idx):]
            loss = ce(plain, y_t[idx].to(dev)) + cfg.consistency_weight * (plain - flipped).pow(2).mean()
            if model.head.guide_classifier is not None:
                loss = loss + cfg.guide_loss_weight * ce(model.head.last_guide_logits[: len(idx)], y_t[idx].to(dev))
            optimizer_step(opt, loss, "classifier", epoch)
            total += loss.item() / steps
            report("classifier", epoch * steps + s + 1, epochs * steps, {"epoch": epoch + 1, "loss": total})
        probs = softmax(validation_logits(model, x_val, cfg))
        val_auc, val_acc = auc(y_val, probs), float((probs.argmax(1) == y_val).mean())
        score = selection_score(y_val, probs)
        history.append({"epoch": epoch + 1, "loss": total, "val_auc": val_auc, "val_accuracy": val_acc,
                        "val_macro_f1": macro_f1(y_val, probs)})  # what the AUC-picked epoch costs at argmax
        if score > best["auc"]:
            best = {"auc": score, "epoch": epoch + 1, "state": copy.deepcopy(model.head.state_dict())}
        _save_state(state_path, model=model.head.state_dict(), opt=opt.state_dict(), epoch=epoch + 1,
                    history=history, best=best["state"], best_auc=best["auc"], best_epoch=best["epoch"])
    model.head.load_state_dict(best["state"])
    return best, history


def _quiet(phase: str, done: int, total: int, scalars: dict) -> None:
    pass


BUDGETS = ("steps_diffusion", "steps_classifier", "epochs_diffusion", "epochs_classifier")
OPTION = {"layer_choice": "--layers", "trunk_from": "--trunk"}  # config fields whose CLI option reads otherwise


def resume_config(out: Path, requested: Config, given: set[str]) -> tuple[Config, bool]:
    """(settings to continue ``out`` with, whether it is already finished with them). The saved
    ``config.json`` decides; budgets the user gave extend it; any other option given that differs from the
    saved value is refused (naming both), so a resume never mixes two recipes."""
    saved = rundir.load_config(out)
    conflicts = [f for f in sorted(given - set(BUDGETS)) if getattr(requested, f) != getattr(saved, f)]
    if conflicts:
        raise UserError(f"--resume continues {out} with its saved settings, and these options differ from them: "
                         + ", ".join(f"{OPTION.get(f, '--' + f.replace('_', '-'))} {getattr(requested, f)!r} "
                                     f"(saved {getattr(saved, f)!r})" for f in conflicts)
                         + "; drop them, or train into a new --out")
    budgets = {f: getattr(requested, f) for f in given & set(BUDGETS)}
    for phase in ("diffusion", "classifier"):  # an explicit step budget replaces a saved epoch budget
        if f"steps_{phase}" in budgets:
            budgets.setdefault(f"epochs_{phase}", None)
    cfg = saved.replace(**budgets)
    return cfg, cfg == saved and (out / rundir.METRICS).is_file()


def train(data: str | Path, out: str | Path, cfg: Config, resume: bool = False,
          report: Report = _quiet, log: Callable[[str], None] = print, overrides: dict | None = None) -> dict:
    """Train a run from a dataset folder; returns ``metrics.json``'s content.

    With ``resume`` and a saved ``config.json``, the saved settings are used; ``overrides`` (options the
    user gave explicitly, e.g. a longer budget) are applied on top."""
    out = Path(out)
    state_dir = out / "state"
    if resume and (out / rundir.CONFIG).is_file():
        overrides = dict(overrides or {})
        for phase in ("diffusion", "classifier"):  # an explicit step budget replaces a saved epoch budget
            if f"steps_{phase}" in overrides:
                overrides.setdefault(f"epochs_{phase}", None)
        cfg = rundir.load_config(out).replace(**overrides)
    seed_all(cfg.seed)
    fixed_layers = selection.parse_choice(cfg.layer_choice, cfg.num_layers)  # bad --layers fails before any work
    ds = discover(data, cfg.val_fraction, cfg.split_seed)
    cfg = cfg.replace(classes=tuple(ds.classes), data_root=str(Path(data).resolve()), val_source=ds.val_source)
    k = len(ds.classes)
    real = len(ds.train)  # synthetic images are appended after the real ones
    reused = reuse_trunk(cfg) if cfg.trunk_from else None  # checked before anything is written
    if reused is not None:  # the run samples (augment) as its trunk was trained
        cfg = cfg.replace(input_skip=reused.input_skip)
    if cfg.synthetic:
        _, synth = read_split(Path(cfg.synthetic), list(ds.classes))
        ds.train = Split(ds.train.paths + synth.paths, np.concatenate([ds.train.labels, synth.labels]))
        cfg = cfg.replace(synthetic=str(Path(cfg.synthetic).resolve()), synthetic_counts=tuple(synth.counts(k)))
        log(f"synthetic: {len(synth)} images from {cfg.synthetic} {synth.counts(k)} added to training only")
    log(f"data: {len(ds.train)} train {ds.train.counts(k)}, {len(ds.val)} val {ds.val.counts(k)} "
        f"({ds.val_source}); classes {', '.join(ds.classes)}")
    for warning in audit(ds):
        log(f"warning: {warning}")
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
    diagnose = trunk_diagnosis(cfg, x_train[:real], ds.train.labels[:real], x_val, ds.val.labels)
    if reused is not None:
        trunk, diff_hist = reused, []
        checks = [{"step": 0, **diagnose(trunk, 0)}]
        log(f"step 1 skipped: trunk {'randomly initialised' if cfg.trunk_from == 'random' else 'reused from ' + cfg.trunk_from}")
    else:
        log(f"step 1: {cfg.steps_diffusion} steps of {cfg.batch_size} images, autocast {cfg.amp}, "
            f"EMA {cfg.ema_decay or 'off'}, lr {cfg.diffusion_lr or cfg.lr:g} ({cfg.lr_schedule}), "
            f"{f'min-SNR-{cfg.min_snr_gamma:g}' if cfg.min_snr_gamma > 0 else 'uniform'} ε weights, CPU {isa.describe()}")
        trunk, diff_hist, checks = train_diffusion(cfg, x_train, ds.train.labels, state_dir / "diffusion.pt", report,
                                                   resume, log=epoch_log(out, log, cfg.steps_diffusion), diagnose=diagnose)
    if not distributed.is_main():
        return {}  # step 2 and all writes belong to rank 0
    rundir.save_weights(trunk, out / rundir.DIFFUSION)
    t_diffusion = time.perf_counter() - t0
    trunk_report = write_trunk_report(out, cfg, trunk, checks, Path(data).name)
    best_probe = trunk_report["best_probe"]
    log(f"trunk: best probe AUC {best_probe['auc']:.3f} (layer {best_probe['layer']}, t={best_probe['timestep']}, "
        f"{best_probe['kind']}) vs pixel probe {trunk_report['pixel_probe']:.3f}; x0-MSE/variance at t=500 "
        f"{trunk_report['x0_ratio_t500']:.2f}{_reference_text(trunk_report)} (trunk.png)")

    # The Gaussianity test sees real images only, drawn with the split seed: the layers are a property of
    # the trunk and the data, not of the step-2 seed (a seed-drawn 256-image sample picked 44 different sets)
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
                   f"{how} on {Path(data).name}: layers {list(layers)}", frequency)
    rundir.save_config(cfg, out)
    stable = (f"; picked on {', '.join(f'{frequency[i]:.0%}' for i in layers)} of random halves of the "
              f"{len(sample)} images" if frequency else "")
    log(f"{how}: layers {list(layers)} (p = {', '.join(f'{pvals[i]:.2g}' for i in layers)}{stable})")

    t1 = time.perf_counter()
    model = DCube(cfg, k)
    model.trunk.load_state_dict(trunk.state_dict())
    if cfg.resnet_weights:
        model.head.resnet.load_local_weights(cfg.resnet_weights)
    best, cls_hist = train_classifier(cfg, model, x_train, ds.train.labels, x_val, ds.val.labels,
                                      state_dir / "classifier.pt", report, resume)
    rundir.save_weights(model.head, out / rundir.CLASSIFIER)
    t_classifier = time.perf_counter() - t1

    val = classification_report(ds.val.labels, softmax(validation_logits(model, x_val, cfg)), list(ds.classes))
    if warning := collapse_warning(val):
        log(warning)
    metrics = {"validation": val, "best_epoch": best["epoch"], "val_source": ds.val_source,
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


def epoch_log(out: Path, log: Callable[[str], None], total: int) -> Callable[[str], None]:
    """Every line appended to ``out/train.log``; of the per-epoch lines about ten also reach the console,
    other lines (the checkpoint diagnostics) all of them."""
    last = [-1]

    def write(line: str) -> None:
        if not distributed.is_main():
            return
        with open(out / "train.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        if not line.startswith("epoch "):
            log(line)
            return
        step = int(line.split(" step ")[1].split("/")[0])
        if step * 10 // total != last[0]:
            last[0] = step * 10 // total
            log(line)

    return write


PROBE_IMAGES = (1000, 500)  # at most this many training / validation images in the probes


def trunk_diagnosis(cfg: Config, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                    y_val: np.ndarray) -> Diagnose:
    """The diagnosis run at step-1 checkpoints (EMA weights): denoising bands and linear probes
    (spatial probes only at the last checkpoint, where they cost most)."""
    rng = np.random.default_rng(cfg.split_seed)
    tr = np.sort(rng.permutation(len(x_train))[: PROBE_IMAGES[0]])
    va = np.sort(rng.permutation(len(x_val))[: PROBE_IMAGES[1]])
    schedule = Schedule(cfg)

    def diagnose(trunk: UViT, step: int) -> dict:
        last = step in (0, cfg.steps_diffusion)
        out = {"denoising": diagnostics.denoising(trunk, schedule, x_val[va], seed=cfg.seed),
               "probes": diagnostics.probes(trunk, x_train[tr], y_train[tr], x_val[va], y_val[va], spatial=last)}
        if last:
            out["linear_reference"] = diagnostics.linear_reference(schedule, x_train[tr], x_val[va], seed=cfg.seed)
            out["memorised_reference"] = diagnostics.memorised_reference(schedule, x_train[tr], x_val[va], seed=cfg.seed)
        return out

    return diagnose


def _reference_text(report: dict) -> str:
    """The reference denoisers' x0 ratios (each absent from trunk reports written before it existed)."""
    return "".join(f", {label} denoiser {r:.2f}" for key, label in diagnostics.REFERENCES
                   if (r := report.get(f"{key}_x0_ratio_t500")) is not None)


def write_trunk_report(out: Path, cfg: Config, trunk: UViT, checks: list[dict], dataset: str) -> dict:
    """``trunk.json`` (all checkpoints) and ``trunk.png`` (curves, final probes, DDIM samples)."""
    final = checks[-1]
    den = final["denoising"]
    i500 = list(den["timesteps"]).index(500)
    refs = {key: final.get(f"{key}_reference") for key, _ in diagnostics.REFERENCES}
    ratio = {f"{key}_x0_ratio_t500": ref["x0_mse"][i500] / ref["image_variance"] if ref else None
             for key, ref in refs.items()}
    report = {"checkpoints": checks, "best_probe": diagnostics.best_probe(final["probes"]),
              "pixel_probe": final["probes"]["pixels"], "x0_ratio_t500": den["x0_mse"][i500] / den["image_variance"],
              **ratio,
              "probe": "logistic regression on train features, AUC on validation; best L2 of "
                       f"{list(diagnostics.PROBE_C)}", "timesteps_bands": list(diagnostics.BANDS)}
    write_json(out / "trunk.json", report)
    grid = diagnostics.samples(trunk, Schedule(cfg), len(cfg.classes), per_class=6, seed=cfg.seed)
    diagnostics.plot({**report, "samples": grid}, out / "trunk.png",
                     f"{dataset}, preset {cfg.preset}: trunk diagnostics (rows of samples: {', '.join(cfg.classes)})")
    return report


ARCHITECTURE = ("image_size", "patch_size", "width", "depth", "heads", "mlp_ratio")


def reuse_trunk(cfg: Config) -> UViT:
    """Step 1 of another run (``--trunk RUN``): same architecture and classes, weights from safetensors."""
    if cfg.trunk_from == "random":  # the ablation's untrained trunk: what step 2 gets from architecture alone
        return UViT(cfg, len(cfg.classes)).to(distributed.device()).eval()
    src = Path(cfg.trunk_from)
    other = rundir.load_config(src)
    if other.model != "dcube" or not (src / rundir.DIFFUSION).is_file():
        raise rundir.RunError(f"--trunk {src}: not a D-Cube run with a trained trunk ({rundir.DIFFUSION})")
    differ = [f"{f} {getattr(other, f)} vs {getattr(cfg, f)}" for f in ARCHITECTURE if getattr(other, f) != getattr(cfg, f)]
    if differ:
        raise rundir.RunError(f"--trunk {src} has another architecture ({', '.join(differ)}): pass --preset {other.preset}")
    if other.classes != cfg.classes:
        raise rundir.RunError(f"--trunk {src} was trained on classes {list(other.classes)}, this data has {list(cfg.classes)}")
    trunk = UViT(cfg.replace(input_skip=other.input_skip), len(cfg.classes))
    rundir.load_weights(trunk, src / rundir.DIFFUSION)
    return trunk.to(distributed.device()).eval()


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
