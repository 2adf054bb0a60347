"""The results tables of docs/results.md: a declarative plan of runs (dataset × variant × seed),
trained through the CLI itself and rendered to markdown.

Resumable: a run with ``metrics.json`` is kept, an interrupted run (D-Cube or baseline) resumes from its last
complete epoch. Variants that only change step 2 reuse the same seed's D-Cube trunk (``--trunk``),
so their difference to the headline row is the step-2 choice alone.

    python -m research.ablation run runs/ablation      # hours on 2 CPU cores; Ctrl-C and rerun to resume
    python -m research.ablation report runs/ablation docs/results.md
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from dcube_edge.config import Config
from dcube_edge.runtimes.files import atomic_path, write_json


@dataclass(frozen=True)
class Dataset:
    name: str
    split: str  # how validation is held out, for the tables


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    args: tuple[str, ...] = ()
    reuse_trunk: bool = False  # step 2 only, on the same seed's `dcube` trunk
    balance: bool = False  # `augment --balance` from that trunk, mixed into training
    baseline: bool = False
    own_budget: bool = False  # the variant sets its own step budgets (not the plan's)
    step1_scale: int = 1  # step 1 runs this many times the plan's (or the preset's) step-1 budget


# Budgets are the preset's (steps, the same on every dataset), so every dataset gets the same number of
# optimizer steps; `--steps S1,S2` overrides them for every row (e.g. on a GPU machine).
DATASETS = {d.name: d for d in (
    Dataset("breastmnist", "official val/ (78 images)"),
    Dataset("pneumoniamnist", "official val/ (524 images)"),
    Dataset("busi128", "stratified 15 % of train/, split seed 0 (94 images)"),
)}
VARIANTS = {v.name: v for v in (
    Variant("dcube", "D-Cube, the preset's defaults (small: EMA trunk, warmup + constant lr + decay over the last quarter, "
                     "Gaussianity layers on a split-seed sample, t = 10, 50, 100, class-balanced cross-entropy; rows "
                     "trained with an older step-1 recipe say so above the headline)"),
    Variant("resnet18", "ResNet-18 baseline, same splits, preprocessing, optimiser, flips", baseline=True),
    Variant("branch", "D-Cube's own ResNet guide branch alone (+ global pool + linear), same harness", baseline=True),
    Variant("random-trunk", "untrained (random-init) trunk, step 2 as D-Cube", ("--trunk", "random")),
    Variant("old-recipe", "the previous recipe: 680 step-1 steps (40 BreastMNIST epochs), constant lr, no EMA",
            ("--steps-diffusion", "680", "--lr-schedule", "constant", "--ema-decay", "0", "--steps-classifier", "270"),
            own_budget=True),
    Variant("long-trunk", "step 1 for twice the budget at a constant lr (does a trunk trained further learn more?)",
            ("--lr-schedule", "constant"), step1_scale=2),
    Variant("wsd", "step 1 at a constant lr, then cosine to 10 % over the last quarter, no input skip (same budget as D-Cube)",
            ("--lr-schedule", "wsd", "--no-input-skip")),
    Variant("input-skip", "step 1 with WSD and the input skip (ε̂ = network + g(t)·x_t)", ("--lr-schedule", "wsd", "--input-skip")),
    Variant("cosine", "step 1 with warmup + cosine decay to 10 %, no input skip (the `small` recipe until 2026-11-27)",
            ("--lr-schedule", "cosine", "--no-input-skip")),
    Variant("min-snr", "step 1 with min-SNR-5 ε-loss weights (trunk retrained)", ("--min-snr-gamma", "5")),
    Variant("no-ema", "step 1 without EMA (trunk retrained)", ("--ema-decay", "0")),
    Variant("guide-loss", "step 2 + cross-entropy on the guide branch's pooled map (weight 0.5)",
            ("--guide-loss-weight", "0.5"), reuse_trunk=True),
    Variant("unweighted-ce", "step 2 with unweighted cross-entropy (the reference; the default before 2026-11-26)",
            ("--class-weights", "none"), reuse_trunk=True),
    Variant("narrow-guide", "step 2 with the previous `small` guide branch (ResNet-50 layout at width 16)",
            ("--guide-branch", "narrow-resnet50"), reuse_trunk=True),
    Variant("large-t", "step 2 at t = 200, 350, 500", ("--timesteps", "200,350,500"), reuse_trunk=True),
    Variant("no-contrastive", "step 1 without the margin contrastive term (trunk retrained)", ("--contrastive-weight", "0")),
    Variant("all-layers", "all 13 trunk layers into the head", ("--layers", "all"), reuse_trunk=True),
    Variant("last-layer", "only the last trunk layer (12)", ("--layers", "last"), reuse_trunk=True),
    Variant("random-t", "one random t in [1, 100] per image at training and validation (the reference)",
            ("--random-t",), reuse_trunk=True),
    Variant("balance", "minority classes filled to the majority by `augment --balance` (DDIM, 50 steps)",
            reuse_trunk=True, balance=True),
)}
HEADLINE = ("dcube", "resnet18", "branch")
ABLATIONS = ("narrow-guide", "random-trunk", "old-recipe", "long-trunk", "wsd", "input-skip", "cosine", "min-snr", "guide-loss", "unweighted-ce", "large-t", "no-ema", "no-contrastive",
             "all-layers", "last-layer", "random-t", "balance")
# Seed 0 of the headline on every dataset first, then BreastMNIST's and BUSI's ablations, then more seeds.
PLAN: tuple[tuple[str, str, int], ...] = (
    *[(d, m, 0) for d in DATASETS for m in HEADLINE],
    *[(d, v, 0) for d in ("breastmnist", "busi128") for v in ABLATIONS],
    *[(d, m, s) for s in (1, 2) for d in DATASETS for m in HEADLINE],
    *[("breastmnist", "narrow-guide", s) for s in (1, 2)],  # the component that decided the headline
    *[("breastmnist", "random-trunk", s) for s in (1, 2)],  # what a trained trunk adds over an untrained one
    *[(d, "cosine", s) for s in (1, 2) for d in DATASETS],  # the step-1 recipe until 2026-11-27, seed for seed
    *[("pneumoniamnist", v, 0) for v in ABLATIONS],
)
# Layers the D-Cube authors report per modality (the paper's Gaussianity-selected layers), matched to our datasets.
PAPER_LAYERS = {"breastmnist": ("breast", (4, 5)), "busi128": ("breast", (4, 5)),
                "pneumoniamnist": ("COVID X-ray", (9, 10))}


def run_dir(root: Path, dataset: str, variant: str, seed: int) -> Path:
    return root / dataset / f"{variant}-s{seed}"


def _cli(args: list[str], log: Path) -> None:
    with log.open("a") as f:
        f.write(f"\n$ dcube-edge {' '.join(args)}\n")
        f.flush()
        rc = subprocess.run([sys.executable, "-m", "dcube_edge.cli", *args], stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise RuntimeError(f"dcube-edge {args[0]} exited {rc}; see {log}")


def run_one(root: Path, data: Path, dataset: str, variant: str, seed: int, preset: str = "small",
            steps: tuple[int, int] | None = None) -> bool:
    """Train one row (and the trunk it depends on); False if it was already done."""
    out = run_dir(root, dataset, variant, seed)
    if (out / "metrics.json").is_file():
        return False
    v = VARIANTS[variant]
    step1, step2 = steps or (None, None)
    if v.step1_scale != 1:
        step1 = v.step1_scale * (step1 or Config.from_preset(preset).steps_diffusion)
    budget = [] if v.own_budget else [*(["--steps-diffusion", str(step1)] if step1 else []),
                                      *(["--steps-classifier", str(step2)] if step2 else [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    src = str(data / dataset)
    if v.baseline:
        _cli(["baseline", src, "--out", str(out), "--model", variant, "--preset", preset, "--seed", str(seed),
              *(["--steps", str(steps[1])] if steps else []),
              *(["--resume"] if (out / "config.json").is_file() else [])], log)
        return True
    args = ["train", src, "--out", str(out), "--preset", preset, "--seed", str(seed), *budget, *v.args]
    if v.reuse_trunk:
        trunk = run_dir(root, dataset, "dcube", seed)
        run_one(root, data, dataset, "dcube", seed, preset, steps)
        args += ["--trunk", str(trunk)]
        if v.balance:
            synthetic = root / dataset / f"synthetic-s{seed}"
            _cli(["augment", str(trunk), "--out", str(synthetic), "--balance", "--seed", str(seed)], log)
            args += ["--synthetic", str(synthetic)]
    if (out / "config.json").is_file():
        args.append("--resume")
    _cli(args, log)
    return True


def _branch_twin(preset: str) -> str | None:
    """The baseline that is the same network as the preset's guide branch: its row is the branch-alone row."""
    from dcube_edge.config import PRESETS
    from dcube_edge.resnet import branch_twin

    return branch_twin(Config.from_preset(preset)) if preset in PRESETS else None


def run(root: Path, data: Path, plan=PLAN, preset: str = "small", steps: tuple[int, int] | None = None,
        echo=print) -> list[str]:
    """Every row of the plan; failures are reported and skipped. Returns the failures."""
    from dcube_edge.runtimes.timing import machine_info

    root.mkdir(parents=True, exist_ok=True)
    if not (root / "machine.json").is_file():
        write_json(root / "machine.json", {**machine_info(), "started": time.strftime("%Y-%m-%d")})
    failures = []
    twin = _branch_twin(preset)
    for i, (dataset, variant, seed) in enumerate(plan, 1):
        if variant == "branch" and twin:
            echo(f"[{i}/{len(plan)}] {dataset} {variant} seed {seed}: the {preset} guide branch is {twin}; that row stands for it")
            continue
        t0 = time.perf_counter()
        try:
            done = run_one(root, data, dataset, variant, seed, preset, steps)
        except RuntimeError as e:
            failures.append(str(e))
            echo(f"[{i}/{len(plan)}] {dataset} {variant} seed {seed}: FAILED ({e})")
            continue
        echo(f"[{i}/{len(plan)}] {dataset} {variant} seed {seed}: "
             f"{'trained in ' + format(time.perf_counter() - t0, '.0f') + ' s' if done else 'kept'}")
    return failures


# ---------------------------------------------------------------- report


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _trunk_source(row: dict) -> Path | None:
    """The run whose trained trunk this row reused (``--trunk``); None for its own or a random trunk."""
    source = row["config"].get("trunk_from") or ""
    return Path(source) if source and source != "random" else None


def _rows(root: Path) -> dict[tuple[str, str, int], dict]:
    rows = {}
    for dataset, variant, seed in PLAN:
        out = run_dir(root, dataset, variant, seed)
        metrics, config = _load(out / "metrics.json"), _load(out / "config.json")
        if metrics and config:
            source = _trunk_source({"config": config})
            trunk = _load(source / "trunk.json") if source else None
            rows[dataset, variant, seed] = {"metrics": metrics, "config": config, "dir": out.resolve(),
                                            "selection": _load(out / "selection.json"),
                                            "trunk": trunk or _load(out / "trunk.json")}  # a reused trunk's own history
    return rows


STEP1_RECIPE = ("lr_schedule", "input_skip", "diffusion_lr", "min_snr_gamma", "ema_decay", "contrastive_weight")


def _stale_recipe(rows: dict) -> list[str]:
    """A line naming the D-Cube headline rows whose trunk was trained with another step-1 recipe than their preset's
    current defaults (the trunk's own config where the row reused one)."""
    stale: dict[str, list[str]] = {}
    for (dataset, variant, seed), row in sorted(rows.items()):
        if variant != "dcube":
            continue
        source = _trunk_source(row)
        trunk_cfg = (_load(source / "config.json") if source else row["config"]) or {}
        now = Config.from_preset(row["config"]["preset"]).to_dict()
        differ = ", ".join(f"{k} {trunk_cfg[k]} (now {now[k]})" for k in STEP1_RECIPE if k in trunk_cfg and trunk_cfg[k] != now[k])
        if differ:
            stale.setdefault(differ, []).append(f"{dataset} seed {seed}")
    return [f"**Trained before the defaults changed:** {', '.join(runs)} — step 1 with {differ}." for differ, runs in stale.items()] + (
        [""] if stale else [])


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "not run"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} ({len(values)} seeds)"


def seeded_ablations(rows: dict) -> list[str]:
    """The ablation rows trained with more than one seed: means over seeds and the same-seed Δ against D-Cube."""
    lines = []
    for dataset in DATASETS:
        for variant in ABLATIONS:
            seeds = sorted(s for (d, v, s) in rows if d == dataset and v == variant)
            if len(seeds) < 2:
                continue
            vals = [rows[(dataset, variant, s)]["metrics"]["validation"] for s in seeds]
            ref = {s: rows[(dataset, "dcube", s)]["metrics"]["validation"] for s in seeds if (dataset, "dcube", s) in rows}
            delta = [v["auc"] - ref[s]["auc"] for s, v in zip(seeds, vals) if s in ref]
            lowest = [min(r for r in v["per_class_recall"].values() if r is not None) for v in vals]
            lines.append(f"| {dataset} | {variant} | {', '.join(map(str, seeds))} | {_mean_sd([v['auc'] for v in vals])} | "
                         f"{_mean_sd([v['macro_f1'] for v in vals])} | {np.mean(lowest):.2f} | "
                         f"{_mean_sd(delta) if delta else '–'} (ahead in {sum(d > 0 for d in delta)} of {len(delta)}) |")
    if not lines:
        return []
    return ["", "### Ablation rows with more than one seed", "",
            "Means over the seeds run; Δ AUC against the D-Cube row of the same seed (its trunk and step-2 seed). A row the "
            "seed-0 table marks as trained on another trunk mixes that difference into its Δ.", "",
            "| dataset | variant | seeds | val AUC | macro-F1 | lowest class recall (mean) | Δ AUC vs D-Cube, same seed |",
            "|---|---|---|---|---|---|---|", *lines]


def _at_op(ops: list[dict | None], key: str) -> str:
    """A figure at the operating point over seeds, or – where a run predates operating points."""
    return _mean_sd([o[key] for o in ops]) if ops and all(ops) else "–"


def _recalls(val: dict) -> str:
    return " / ".join("–" if r is None else f"{r:.2f}" for r in val["per_class_recall"].values())


def _preset(rows: dict) -> str:
    return ", ".join(sorted({r["config"]["preset"] for r in rows.values()})) or "small"


def _epochs(row: dict) -> int:
    """Epochs step 2 (or the baseline) ran: one validation per epoch."""
    hist = row["metrics"].get("history", {})
    return len(hist.get("classifier") or hist.get("baseline") or [])


def _loss_note(row: dict) -> str:
    """Rows trained with another cross-entropy than today's default say so."""
    used = row["config"].get("class_weights", "none")
    return "" if used == Config().class_weights else f" ({used} CE)"


def _branch(row: dict) -> str:
    """The guide branch a run trained with, as block type × width × blocks per stage."""
    c = row["config"]
    return f"{c.get('resnet_block', 'bottleneck')} ×{c['resnet_width']} {'-'.join(map(str, c['resnet_layers']))}"


MODEL_NAMES = {"dcube": "D-Cube small", "resnet18": "ResNet-18", "branch": "ResNet branch alone"}


def _seconds(m: dict) -> float:
    return sum(m["seconds"].values())


def _trunk_dir(row: dict) -> Path:
    """The run directory whose step 1 trained this row's trunk."""
    return (_trunk_source(row) or row["dir"]).resolve()


def _seconds_with_trunk(row: dict) -> float:
    """A run's training time including the step 1 of the trunk it reused (its own time counts loading it only)."""
    source = _trunk_source(row)
    trunk = _load(source / "metrics.json") if source else None
    return _seconds(row["metrics"]) + (trunk["seconds"]["diffusion"] if trunk else 0.0)


def _shared_trunk(rows: dict) -> list[str]:
    """A line saying which D-Cube headline rows reuse another run's trunk (their seeds vary step 2 only)."""
    shared = sorted(f"{d} seed {s}" for (d, v, s), r in rows.items() if v == "dcube" and _trunk_source(r))
    return [f"**One trunk per dataset:** {', '.join(shared)} reuse a trained step-1 trunk (`--trunk`, the seed-0 "
            "run's): their seeds vary step 2 only, and their train time adds that trunk's step 1.", ""] if shared else []


def selection_figure(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(4.2 * len(DATASETS), 3.2), dpi=120, sharey=True)
    for ax, dataset in zip(np.atleast_1d(axes), DATASETS):
        organ, paper = PAPER_LAYERS[dataset]
        for seed in (0, 1, 2):
            row = rows.get((dataset, "dcube", seed))
            if row and row["selection"]:
                p = np.clip(np.asarray(row["selection"]["p_values"]), 1e-300, 1)
                ax.plot(range(len(p)), -np.log10(p), marker="o", ms=3, label=f"seed {seed}: {row['selection']['selected_layers']}")
        for layer in paper:
            ax.axvline(layer, color="tab:red", alpha=0.25, lw=6)
        ax.axhline(-np.log10(0.05), ls="--", c="k", lw=1)
        ax.set_title(f"{dataset} (paper, {organ}: {list(paper)})", fontsize=9)
        ax.set_xlabel("trunk layer")
        ax.set_xticks(range(13))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("-log10 p (normality of PC1)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


TRUNK_ROWS = ("dcube", "old-recipe", "cosine", "long-trunk", "wsd", "input-skip", "min-snr", "no-ema", "random-trunk")


def _trunk(root_row: dict | None) -> dict | None:
    return (root_row or {}).get("trunk")


def _trunks(root: Path, rows: dict) -> dict[tuple[str, str], dict]:
    """Seed-0 trunk reports per (dataset, trunk recipe): a finished row's, else the run directory's own
    ``trunk.json`` — written when step 1 ends, so a trunk shows here while its step 2 still runs."""
    found = {}
    for dataset in DATASETS:
        for variant in TRUNK_ROWS:
            t = _trunk(rows.get((dataset, variant, 0))) or _load(run_dir(root, dataset, variant, 0) / "trunk.json")
            if t:
                found[dataset, variant] = t
    return found


def trunk_section(trunks: dict, figure: Path | None, out: Path) -> list[str]:
    """What each trunk learned (trunk.json of the run): probes vs the pixel probe, x0 at t = 500."""
    lines = ["", "## What the trunk learned (seed 0, `trunk.json` of each run)", "",
             "Linear probes: logistic regression on training-image features, AUC on validation (best L2 of three), per "
             "layer × timestep, token-mean and 2×2-pooled patch tokens; the pixel probe is the same regression on raw "
             "pixels. x0-MSE is the trunk's clean-image estimate from x_t at t = 500 on validation images, as a fraction of "
             "the image variance (1 = no better than the mean image); the linear denoiser is the Wiener filter on the "
             "training images' principal components, scored the same way (a trunk above it has learned less than the "
             "pixel covariance); the memorising denoiser is the posterior mean over the training images (what recalling "
             "the training set reaches; both references use the same ≤ 1,000 training images).", "",
             "| dataset | trunk | steps | pixel probe | best trunk probe (kind, layer, t) | margin | x0-MSE / variance at t = 500 | "
             "linear denoiser | memorising denoiser | ε-MSE at t = 500 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        for variant in TRUNK_ROWS:
            t = trunks.get((dataset, variant))
            if not t:
                continue
            b, last = t["best_probe"], t["checkpoints"][-1]
            den = last["denoising"]
            i = den["timesteps"].index(500)
            lines.append(f"| {dataset} | {variant} | {last['step']} | {t['pixel_probe']:.3f} | {b['auc']:.3f} ({b['kind']}, "
                         f"{b['layer']}, {b['timestep']}) | {b['over_pixels']:+.3f} | {t['x0_ratio_t500']:.2f} | "
                         f"{_ratio(t.get('linear_x0_ratio_t500'))} | {_ratio(t.get('memorised_x0_ratio_t500'))} | "
                         f"{den['eps_mse'][i]:.4f} |")
    lines += _figure(trunk_figure, trunks, figure, out, "trunk curves")
    return lines


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _figure(draw, data: dict, figure: Path | None, out: Path, caption: str) -> list[str]:
    """Draw a figure next to the report and return the markdown lines that show it (none without a path)."""
    if not figure:
        return []
    draw(data, figure)
    return ["", f"![{caption}](./{figure.relative_to(out.parent).as_posix()})"]


def trunk_figure(trunks: dict, path: Path) -> None:
    """Per dataset, one line per trunk recipe against the step-1 step: validation ε-MSE at t = 500, x0-MSE / image
    variance at t = 500 (target < 0.5, beside the linear and memorising denoisers) and the best probe of any kind, layer and t
    (the trunk table's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in DATASETS if any((d, v) in trunks for v in TRUNK_ROWS)]
    if not datasets:
        return
    from dcube_edge.diagnostics import REFERENCES, best_probe

    fig, axes = plt.subplots(3, len(datasets), figsize=(4.6 * len(datasets), 9.4), dpi=110, squeeze=False)
    for j, dataset in enumerate(datasets):
        for variant in TRUNK_ROWS:
            t = trunks.get((dataset, variant))
            if not t or len(t["checkpoints"]) < 1:
                continue
            checks = t["checkpoints"]
            steps = [c["step"] for c in checks]
            i = checks[-1]["denoising"]["timesteps"].index(500)
            axes[0, j].plot(steps, [c["denoising"]["eps_mse"][i] for c in checks], marker="o", label=variant)
            axes[1, j].plot(steps, [c["denoising"]["x0_mse"][i] / c["denoising"]["image_variance"] for c in checks],
                            marker="o", label=variant)
            axes[2, j].plot(steps, [best_probe(c["probes"])["auc"] for c in checks], marker="o", label=variant)
            axes[2, j].axhline(t["pixel_probe"], ls="--", c="k", lw=1)
        axes[1, j].axhline(0.5, ls="--", c="k", lw=1)
        for (key, label), style in zip(REFERENCES, (":", "-.")):
            refs = [r for v in TRUNK_ROWS if (t := trunks.get((dataset, v))) and (r := t.get(f"{key}_x0_ratio_t500"))]
            if refs:
                axes[1, j].axhline(refs[0], ls=style, c="C3", lw=1.5, label=f"{label} denoiser")
        axes[0, j].set(title=f"{dataset}: ε-MSE, t = 500", xlabel="step-1 step", yscale="log")
        axes[1, j].set(title=f"{dataset}: x0-MSE / var., t = 500 (- - 0.5)", xlabel="step-1 step", yscale="log")
        axes[2, j].set(title=f"{dataset}: best probe AUC (- - pixel probe)", xlabel="step-1 step")
        for ax in axes[:, j]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def ablation_section(rows: dict) -> list[str]:
    """The seed-0 ablation table and the seeded one; none where this root trained no ablation (a headline-only
    re-run), so a report never lists a whole plan of rows marked not run."""
    if not any(v in ABLATIONS for (_, v, _) in rows):
        return []
    lines = ["", "## Ablations (seed 0; step-2 variants reuse the seed-0 D-Cube trunk)", "",
             "Δ AUC is against the D-Cube row of the same seed (same trunk unless the variant retrains it).", "",
             "| dataset | variant | what changes | layers | val AUC | Δ AUC | accuracy | macro-F1 | recall per class | best epoch | train time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        ref = rows.get((dataset, "dcube", 0))
        for variant in ("dcube", *ABLATIONS):
            r = rows.get((dataset, variant, 0))
            if not r:
                lines.append(f"| {dataset} | {variant} | {VARIANTS[variant].what} | | not run | | | | | | |")
                continue
            v = r["metrics"]["validation"]
            delta = f"{v['auc'] - ref['metrics']['validation']['auc']:+.3f}" if ref and variant != "dcube" else ""
            extra = ""
            if variant != "unweighted-ce":
                extra += _loss_note(r)
            if r["config"].get("synthetic_counts"):
                extra += f" (+{'/'.join(map(str, r['config']['synthetic_counts']))} synthetic)"
            if VARIANTS[variant].reuse_trunk and ref and _trunk_dir(r) != _trunk_dir(ref):
                mine, theirs = (_load(_trunk_dir(x) / "config.json") or {} for x in (r, ref))
                differ = ", ".join(f"{k} {mine[k]}" for k in STEP1_RECIPE if k in mine and mine[k] != theirs.get(k))
                extra += f" (on another trunk than the D-Cube row's{f': step 1 with {differ}' if differ else ''}; Δ mixes two changes)"
            if variant != "narrow-guide" and ref and _branch(r) != _branch(ref):
                extra += f" (guide branch {_branch(r)}, not the D-Cube row's: Δ mixes two changes)"
            if "validation_fixed_t" in r["metrics"]:
                extra += f" (fixed-t engine: AUC {r['metrics']['validation_fixed_t']['auc']:.3f})"
            lines.append(f"| {dataset} | {variant} | {VARIANTS[variant].what}{extra} | "
                         f"{','.join(map(str, r['config']['selected_layers']))} | {v['auc']:.3f} | {delta} | "
                         f"{v['accuracy']:.3f} | {v['macro_f1']:.3f} | {_recalls(v)} | {r['metrics']['best_epoch']} of {_epochs(r)} | "
                         f"{_seconds(r['metrics']) / 60:.1f} min |")
    lines += seeded_ablations(rows)
    return lines


def _archived_ablations(root: Path, out: Path) -> list[str]:
    """Where a headline-only root's report sends a reader for ablations: the dated reports kept beside it."""
    archives = sorted(out.parent.glob(f"{out.stem}-????-??-??.md"), reverse=True)
    links = ", ".join(f"[{a.stem.removeprefix(out.stem + '-')}](./{a.name})" for a in archives)
    return ["", "## Ablations", "", f"None trained under `{root}`"
            + (f"; the latest measured are in the dated reports beside this one: {links}." if links else ".")]


def report(root: Path, out: Path, figure: Path | None = None) -> str:
    rows = _rows(root)
    machine = _load(root / "machine.json") or {}
    where = (f"{machine.get('cpu_model', '?')}, {machine.get('cpu_count', '?')} cores ({' '.join(machine.get('isa', []))})"
             f"{', GPU ' + machine['gpu'] if machine.get('gpu') else ', no GPU'}; runs started {machine.get('started', '?')}"
             + (f"; {machine['note']}" if machine.get("note") else ""))  # e.g. how many runs shared the machine
    lines = ["# Results", "",
             "Generated by `make results` (`python -m research.ablation`) from the run directories under "
             f"`{root}`; rows not yet trained say so. Preset `{_preset(rows)}` (13 trunk layers, the paper's layer indices), "
             "validation metrics of the checkpoint training keeps (validation AUC among epochs whose default operating "
             "point finds every class, docs/evaluation.md; runs before 2026-12-06: AUC alone). AUC is binary, or macro "
             "one-vs-rest for BUSI; "
             "recall is listed per class in folder order.", "",
             f"Machine for every figure: {where}.", ""]
    lines += ["| dataset | classes (train) | validation split | steps (step 1 + step 2; baselines = step 2) |",
              "|---|---|---|---|"]
    for d in DATASETS.values():
        cfg = (rows.get((d.name, "dcube", 0)) or {}).get("config")
        classes = ", ".join(cfg["classes"]) if cfg else "?"
        budget = f"{cfg['steps_diffusion']} + {cfg['steps_classifier']}" if cfg else "not run"
        lines.append(f"| {d.name} | {classes} | {d.split} | {budget} |")
    lines += ["", "## D-Cube vs ResNet-18 vs D-Cube's ResNet branch alone (headline, seeds 0, 1, 2)", "",
              "Macro-F1, balanced accuracy and lowest class recall are at the operating point export would bind (Youden's J "
              "for two classes, balanced per-class biases for more), chosen on the same validation split, so they are "
              "optimistic; argmax macro-F1 beside them. Runs trained before operating points existed show –.", "",
              "| dataset | model | val AUC mean ± sd | macro-F1 at the operating point | balanced accuracy at the operating point | lowest class recall at the operating point | argmax macro-F1 | per-seed AUC | best epoch (per seed) | train time / run |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines[-2:-2] = _stale_recipe(rows) + _shared_trunk(rows)
    twin = _branch_twin(_preset(rows))
    for dataset in DATASETS:
        for model in HEADLINE:
            got = [rows[dataset, model, s] for s in (0, 1, 2) if (dataset, model, s) in rows]
            vals = [r["metrics"]["validation"] for r in got]
            ops = [r["metrics"].get("validation_at_operating_point") for r in got]
            at_op = partial(_at_op, ops)
            lines.append(
                f"| {dataset} | {MODEL_NAMES[model]}{_loss_note(got[0])} | "
                f"{_mean_sd([v['auc'] for v in vals])} | {at_op('macro_f1')} | {at_op('balanced_accuracy')} | "
                f"{at_op('lowest_recall')} | {_mean_sd([v['macro_f1'] for v in vals])} | "
                f"{', '.join(format(v['auc'], '.3f') for v in vals) or '-'} | "
                f"{', '.join(str(r['metrics']['best_epoch']) for r in got)} of {_epochs(got[0])} | "
                f"{np.mean([_seconds_with_trunk(r) for r in got]) / 60:.1f} min |" if got else
                f"| {dataset} | {MODEL_NAMES[model]} | = {MODEL_NAMES[twin]}: the `{_preset(rows)}` guide branch is that "
                f"network | | | | | | | | |" if model == "branch" and twin in MODEL_NAMES else
                f"| {dataset} | {MODEL_NAMES[model]} | not run | | | | | | | | |")
        pairs = [(rows[dataset, 'dcube', s], rows[dataset, 'resnet18', s]) for s in (0, 1, 2)
                 if (dataset, 'dcube', s) in rows and (dataset, 'resnet18', s) in rows]
        if pairs:
            auc, f1 = ([a["metrics"]["validation"][k] - b["metrics"]["validation"][k] for a, b in pairs]
                       for k in ("auc", "macro_f1"))
            ops = [(a["metrics"].get("validation_at_operating_point"), b["metrics"].get("validation_at_operating_point"))
                   for a, b in pairs]
            at = {k: [a[k] - b[k] for a, b in ops] if all(a and b for a, b in ops) else None
                  for k in ("macro_f1", "balanced_accuracy", "lowest_recall")}
            lines.append(f"| {dataset} | D-Cube − ResNet-18 (same seed) | {_mean_sd(auc)} | "
                         + " | ".join(_mean_sd(d) if d else "–" for d in at.values()) + f" | {_mean_sd(f1)} | "
                         f"D-Cube ahead on AUC in {sum(d > 0 for d in auc)} of {len(auc)} seeds, on argmax macro-F1 in "
                         f"{sum(d > 0 for d in f1)}"
                         + (f", on macro-F1 at the operating point in {sum(d > 0 for d in at['macro_f1'])}"
                            if at["macro_f1"] else "") + " | | |")
    lines += trunk_section(_trunks(root, rows), figure.parent / "trunk-curves.png" if figure else None, out)
    ablations = ablation_section(rows)
    lines += ablations or _archived_ablations(root, out)
    lines += ["", "## Gaussianity layer selection vs the layers the authors reported", "",
              "Test: D'Agostino–Pearson (`scipy.stats.normaltest`) on the first principal component of each layer's "
              "token- and timestep-averaged features of 256 training images; layers with p < 0.05 are kept, the 3 "
              "smallest if more pass. The authors report pancreas CT 6, 8, 9; breast 4, 5; COVID X-ray 9, 10.", "",
              "| dataset | seed | selected | p-values of the selected | layers with p < 0.05 | paper (modality) |",
              "|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        organ, paper = PAPER_LAYERS[dataset]
        for seed in (0, 1, 2):
            r = rows.get((dataset, "dcube", seed))
            if r and r["selection"]:
                p = r["selection"]["p_values"]
                sel = r["selection"]["selected_layers"]
                passing = [i for i, x in enumerate(p) if x < 0.05]
                lines.append(f"| {dataset} | {seed} | {', '.join(map(str, sel))} | "
                             f"{', '.join(f'{p[i]:.1e}' for i in sel)} | {len(passing)} of {len(p)} | "
                             f"{', '.join(map(str, paper))} ({organ}) |")
    lines += _figure(selection_figure, rows, figure, out, "per-layer p-values")
    discussion = out.parent / "results-discussion.md"
    if ablations and discussion.is_file():  # the discussion interprets the ablations
        lines += ["", discussion.read_text().rstrip()]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return text


app = typer.Typer(add_completion=False, help="Train and report the results tables (docs/results.md).")


@app.command("run")
def run_cmd(root: Annotated[Path, typer.Argument(help="Where the run directories go.")] = Path("runs/ablation"),
            data: Annotated[Path, typer.Option(help="Folder holding breastmnist/, pneumoniamnist/, busi128/.")] = Path("../shared/data"),
            only: Annotated[str | None, typer.Option(help="Comma-separated datasets to restrict the plan to.")] = None,
            preset: Annotated[str, typer.Option(help="Preset of every run (paper: on a GPU machine).")] = "small",
            steps: Annotated[str | None, typer.Option(help="STEP1,STEP2 step budgets for every row (default: the preset's).")] = None) -> None:
    """Train every row of the plan not yet trained (resumable). Use a fresh ROOT per preset/budget."""
    missing = [d for d in DATASETS if not (data / d).is_dir()]
    if missing:
        typer.echo(f"error: {data} lacks {', '.join(missing)}: pass --data pointing at the shared datasets", err=True)
        raise typer.Exit(2)
    plan = tuple(p for p in PLAN if not only or p[0] in only.split(","))
    try:
        e = tuple(int(v) for v in steps.split(",")) if steps else None
        if e is not None and (len(e) != 2 or min(e) < 1):
            raise ValueError
    except ValueError:
        typer.echo(f"error: --steps {steps!r}: give STEP1,STEP2, e.g. 20000,2000", err=True)
        raise typer.Exit(2) from None
    failures = run(root, data, plan, preset=preset, steps=e)
    if failures:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(root: Annotated[Path, typer.Argument()] = Path("runs/ablation"),
               out: Annotated[Path, typer.Argument()] = Path("docs/results.md")) -> None:
    """Render docs/results.md (and docs/figures/layer-selection.png) from whatever has been trained."""
    report(root, out, out.parent / "figures" / "layer-selection.png")
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
