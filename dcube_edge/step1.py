"""Step 1: the class-conditional U-ViT trunk, trained with the DDPM ε loss plus the margin contrastive loss on
image pairs, EMA weights, checkpoints at every epoch end (resume-exact), and the trunk diagnostics taken at a
few steps (``trunk.json``, ``trunk.png``). Also a trunk reused from another run (``--trunk``)."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dcube_edge.errors import Diverged, UserError
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.files import write_json

from . import diagnostics, distributed, rundir
from .config import Config
from .diffusion import Schedule, eps_loss, margin_contrastive, min_snr_weights
from .uvit import UViT

Report = Callable[[str, int, int, dict], None]  # (phase, done, total, scalars)
Diagnose = Callable[[UViT, int], dict]
AMP = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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

def diffusion_steps_per_epoch(cfg: Config, n_train: int) -> int:
    """Step 1 draws batch_size/2 anchors per step, each with a partner."""
    return max(1, n_train // max(1, cfg.batch_size // 2))

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

class TrunkEMA(torch.optim.swa_utils.AveragedModel):
    """The trunk's exponential moving average: ``module`` is its averaged copy of the trunk."""

    module: UViT


def ema_model(trunk: UViT, decay: float) -> TrunkEMA:
    """EMA of the trunk with the usual warmup: the decay is min(decay, (1 + n) / (10 + n)) at update n."""

    def avg(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged + (current - averaged) * (1.0 - d)

    return TrunkEMA(trunk, avg_fn=avg, use_buffers=True)

def resolve_amp(cfg: Config) -> str:
    if cfg.amp == "auto":
        return isa.training_autocast(cfg.width, cuda=torch.cuda.is_available())
    if cfg.amp not in AMP:
        raise UserError(f"unknown --amp {cfg.amp!r}; choose auto, {', '.join(AMP)}")
    return cfg.amp


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
    schedule, step = Schedule(cfg), 0
    history: list[dict] = []
    checks: list[dict] = []
    snr_weight = min_snr_weights(schedule, cfg.min_snr_gamma).to(dev)
    amp = resolve_amp(cfg)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    if resume and (state := rundir.load_state(state_path)):
        history, checks, step = _resumed(state, trunk, opt, ema, cfg, len(images))
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    per_epoch = diffusion_steps_per_epoch(cfg, len(images))
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
        x0, t, noise, y, drop, different = _pairs(cfg, perm, s, g, x_all, y_all, schedule.steps, dev)
        with torch.autocast(dev.type, dtype=AMP[amp], enabled=amp != "none"):
            eps, mid = model(schedule.q_sample(x0, t, noise), t, y, drop)
        l_eps = eps_loss(eps.float(), noise)  # logged unweighted, so curves compare across weightings
        l_fit = eps_loss(eps.float(), noise, snr_weight[t]) if cfg.min_snr_gamma > 0 else l_eps
        half = len(x0) // 2
        l_con = margin_contrastive(mid[:half].float(), mid[half:].float(), different, cfg.margin)
        loss = l_fit + cfg.contrastive_weight * l_con
        if not torch.isfinite(loss):
            raise Diverged(f"diffusion loss became {loss.item()} at step {step + 1}; the last good checkpoint is "
                           "kept, but --resume would repeat the recipe: train into a new --out with a lower "
                           "--diffusion-lr (or --amp none)")
        scaler.scale(loss / accum).backward()
        if (s + 1) % accum == 0 or s + 1 == per_epoch or step + 1 == cfg.steps_diffusion:
            _optimise(cfg, trunk, opt, scaler, ema, pixels)
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
            history.append({"epoch": epoch + 1, "step": step, **distributed.mean(totals),
                            "lr": peak * lr_factor(cfg, step - 1), "steps_per_s": round(rate, 3)})
            _end_epoch(cfg, state_path, trunk, opt, ema, history, checks, log)
    final = ema.module if ema is not None else trunk
    return final.eval(), history, checks


def _resumed(state: dict, trunk: UViT, opt, ema, cfg: Config, n_images: int) -> tuple[list, list, int]:
    """Load a step-1 checkpoint into the trunk, optimiser and EMA; (history, diagnostics, step)."""
    trunk.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    if ema is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    # checkpoints of dcube-edge before step budgets counted epochs
    step = int(state["step"]) if "step" in state else int(state["epoch"]) * diffusion_steps_per_epoch(cfg, n_images)
    return list(state["history"]), json.loads(state.get("checks", "[]")), step


def _pairs(cfg: Config, perm: torch.Tensor, s: int, g: torch.Generator, x_all: torch.Tensor, y_all: torch.Tensor,
           steps: int, dev: torch.device) -> tuple[torch.Tensor, ...]:
    """Step ``s`` of the epoch's draws: anchors and their partners, both noised with the same t and noise.
    The global batch is drawn identically on every rank; each rank keeps its slice of the pairs, anchors first.
    Returns (x0, t, noise, labels, label dropped, pair of different classes) on ``dev``."""
    half = max(1, cfg.batch_size // 2)
    anchors = perm[s * half:(s + 1) * half]
    partners, different = pick_partners(y_all, anchors, g)
    n = len(anchors)
    idx = torch.cat([anchors, partners])
    flip = torch.rand(2 * n, generator=g) < 0.5
    t = torch.randint(0, steps, (n,), generator=g).repeat(2)
    noise = torch.randn((n, *x_all.shape[1:]), generator=g).repeat(2, 1, 1, 1)
    drop = torch.rand(2 * n, generator=g) < cfg.p_uncond
    mine = torch.arange(distributed.rank(), n, distributed.world_size())
    rows = torch.cat([mine, n + mine])
    x0 = x_all[idx[rows]]
    x0 = torch.where(flip[rows, None, None, None], x0.flip(-1), x0).to(dev)
    return x0, t[rows].to(dev), noise[rows].to(dev), y_all[idx[rows]].to(dev), drop[rows].to(dev), different[mine].to(dev)


def _optimise(cfg: Config, trunk: UViT, opt, scaler, ema, pixels: float) -> None:
    """One optimiser step of the accumulated gradients (clipped on the per-pixel loss scale), then the EMA."""
    if cfg.grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(trunk.parameters(), cfg.grad_clip * pixels)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    if ema is not None:
        ema.update_parameters(trunk)


def _end_epoch(cfg: Config, state_path: Path, trunk: UViT, opt, ema, history: list, checks: list,
               log: Callable[[str], None]) -> None:
    """The epoch's log line and its checkpoint (rank 0 writes; every rank waits for it)."""
    row = history[-1]
    log(f"epoch {row['epoch']} step {row['step']}/{cfg.steps_diffusion} eps/px {row['eps']:.4f} "
        f"contrastive {row['contrastive']:.4f} lr {row['lr']:.2e} {row['steps_per_s']:.2f} steps/s")
    if distributed.is_main():
        rundir.save_state(state_path, model=trunk.state_dict(), opt=opt.state_dict(), step=row["step"], history=history,
                          ema=ema.state_dict() if ema is not None else {}, checks=json.dumps(checks))
    distributed.barrier()


def diagnostic_steps(total: int, count: int = 5) -> set[int]:
    """Steps at which the trunk is diagnosed: ``count`` evenly spaced, the last at the end."""
    return {max(1, round(total * (i + 1) / count)) for i in range(count)}

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

def reference_text(report: dict) -> str:
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
