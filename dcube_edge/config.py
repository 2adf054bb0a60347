"""One typed config: presets are data, the CLI overrides fields, training fills in the rest, the
run dir stores it and export copies what the runtime needs into the manifest."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from dcube_edge.errors import UserError

PRESETS: dict[str, dict[str, Any]] = {
    # Same architecture as `paper`, shrunk so the demo and the tests train on 2 CPU cores in about a minute.
    "tiny": dict(image_size=32, patch_size=4, width=64, depth=2, heads=4,
                 resnet_width=8, resnet_layers=(1, 1, 1, 1), resnet_stem="small",
                 steps_diffusion=180, steps_classifier=100, batch_size=32, timesteps=(10, 50, 100)),
    # 28-64 px data on a CPU: all 13 layers (same indices as the paper), narrower. Guide branch: ResNet-18 layout
    # (basic blocks, width 64), which beat the ResNet-50 layout at width 16 (kept as --guide-branch narrow-resnet50);
    # step 1's lr: constant, then decayed over the last quarter (wsd). Measurements: docs/results-summary.md.
    "small": dict(image_size=32, patch_size=4, width=96, depth=6, heads=4,
                  resnet_block="basic", resnet_width=64, resnet_layers=(2, 2, 2, 2), resnet_stem="small",
                  steps_diffusion=4000, steps_classifier=300, batch_size=64, timesteps=(10, 50, 100),
                  lr_schedule="wsd"),
    # The reference sizes (docs/method.md).
    "paper": dict(image_size=128, patch_size=8, width=512, depth=6, heads=8,
                  resnet_width=64, resnet_layers=(3, 4, 6, 3), resnet_stem="imagenet",
                  steps_diffusion=20000, steps_classifier=2000, batch_size=64, timesteps=(10, 50, 100)),
}


# Step-2 guide branches other than the preset's (train --guide-branch): the config fields each one sets.
GUIDE_BRANCHES: dict[str, dict[str, Any]] = {
    "resnet18": dict(resnet_block="basic", resnet_width=64, resnet_layers=(2, 2, 2, 2)),
    "narrow-resnet50": dict(resnet_block="bottleneck", resnet_width=16, resnet_layers=(3, 4, 6, 3))}


# The one map between `train` options and the Config fields they set, where the names differ (every other
# option sets the field of its own name): the CLI reads which fields an option gave, messages name the option.
FIELDS_OF_OPTION: dict[str, tuple[str, ...]] = {
    "layers": ("layer_choice",), "trunk": ("trunk_from",),
    "guide_branch": ("resnet_block", "resnet_width", "resnet_layers")}


def option_of(field: str) -> str:
    """The `train` option that sets a Config field, as a user types it."""
    name = next((o for o, fs in FIELDS_OF_OPTION.items() if field in fs), field)
    return "--" + name.replace("_", "-")


def fields_of(option: str) -> tuple[str, ...]:
    """The Config fields a `train` option (its parameter name) sets."""
    return FIELDS_OF_OPTION.get(option, (option,))


@dataclass
class Config:
    """Everything that defines a run. Saved as ``config.json``; sizes come from a preset."""

    preset: str = "tiny"
    model: str = "dcube"  # or a plain-CNN baseline: "resnet18", "resnet50"
    # U-ViT trunk
    image_size: int = 32
    patch_size: int = 4
    width: int = 64
    depth: int = 2  # in-blocks = out-blocks = depth; layers = 2*depth + 1
    heads: int = 4
    mlp_ratio: int = 4
    # diffusion (DDPM, linear betas, eps-prediction)
    diffusion_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    p_uncond: float = 0.1  # class label dropped so the unconditional trunk used at step 2 is trained
    margin: float = 0.1
    # Trunk output ε̂ = network + g(t)·x_t, g(t) = √(1−ᾱ)/(ᾱσ² + 1−ᾱ) with σ = 0.5: the linear MMSE estimate of ε for
    # images of that spread, so at high noise the network learns a correction instead of copying its input
    # (EDM-style skip). The hyper-features (block outputs) and the exported graphs do not change.
    input_skip: bool = False
    contrastive_weight: float = 1.0
    # Step-1 ε-loss weight min(SNR_t, γ) / SNR_t (min-SNR-γ, Hang et al. 2023): the low-noise timesteps, whose
    # ε-loss dominates the sum, count less. 0 = off (the reference: every t weighs the same).
    min_snr_gamma: float = 0.0
    # step 2 head
    resnet_width: int = 8
    resnet_layers: tuple[int, ...] = (1, 1, 1, 1)
    resnet_stem: str = "small"  # "imagenet": 7x7/2 + maxpool; "small": 3x3/1 for small images
    resnet_block: str = "bottleneck"  # guide-branch block: "bottleneck" (ResNet-50 layout) or "basic" (ResNet-18/34)
    resnet_weights: str | None = None
    dropout: float = 0.5
    consistency_weight: float = 0.1
    # Supervise the guide branch's pooled map with its own linear classifier (training only; the exported
    # graph is unchanged). 0 = the reference, where the branch learns only through the 1-channel fusion.
    guide_loss_weight: float = 0.0
    # Step-2 (and baseline) cross-entropy: "balanced" (inverse class frequency) or "none" (the reference). Balanced
    # keeps a minority class from collapsing at the same AUC (docs/results-summary.md); baselines use the same loss.
    class_weights: str = "balanced"
    timesteps: tuple[int, ...] = (10, 50, 100)
    # The reference's behaviour instead: one random t in [1, max(timesteps)] per image at training and
    # validation (no feature cache, slower). Exported engines always use the fixed `timesteps`.
    random_t: bool = False
    # layer selection: "gaussianity" (the test below), "all", "last" or explicit indices such as "4,5"
    layer_choice: str = "gaussianity"
    p_threshold: float = 0.05
    max_layers: int = 3
    selection_samples: int = 2048  # training images the Gaussianity test sees (all, on the MedMNIST sets)
    selected_layers: tuple[int, ...] = ()
    # optimisation. Budgets are in steps (batches); `--epochs-*` are converted by train() for the data
    # at hand and kept here as asked, so a run records both.
    steps_diffusion: int = 150
    steps_classifier: int = 60
    epochs_diffusion: int | None = None
    epochs_classifier: int | None = None
    batch_size: int = 32
    lr: float = 2e-4
    diffusion_lr: float | None = None  # step-1 peak lr; None = `lr` (steps 2 and the baselines always use `lr`)
    warmup_steps: int = 0  # step-1 linear lr warmup; 0 = 5 % of the budget
    # step 1 after warmup: "cosine" (to 10 % of lr), "constant" (the reference) or "wsd" (constant, then cosine
    # to 10 % over the last quarter)
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999  # step-1 EMA of the trunk weights (with warmup), used for everything after; 0 = off
    grad_clip: float = 1.0  # step-1 gradient-norm clip on the per-pixel loss scale; 0 = off
    amp: str = "auto"  # step-1 autocast: "auto" (runtimes.isa.training_autocast), "none", "bf16", "fp16" (GPU)
    grad_accum: int = 1  # step-1 batches per optimizer step
    weight_decay: float = 0.03
    seed: int = 0
    trunk_from: str = ""  # reuse this run's step-1 trunk (same architecture and classes): step 2 only
    # data (filled by train)
    classes: tuple[str, ...] = ()
    data_root: str = ""
    val_source: str = ""  # "val/" folder or "stratified 15% of train (seed S)"
    val_fraction: float = 0.15
    split_seed: int = 0  # the held-out split does not move with `seed`, so seeds compare on one split
    synthetic: str = ""  # folder of `dcube-edge augment` images mixed into the training split only
    synthetic_counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        """Option values a run cannot use, refused before any work (messages name the CLI option)."""
        choices = {"amp": ("auto", "none", "bf16", "fp16"), "lr_schedule": ("cosine", "constant", "wsd"),
                   "class_weights": ("balanced", "none"), "resnet_block": ("bottleneck", "basic")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"unknown --{name.replace('_', '-')} {getattr(self, name)!r}; choose {' or '.join(allowed)}")
        for name in ("steps_diffusion", "steps_classifier", "epochs_diffusion", "epochs_classifier", "grad_accum"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
        if self.diffusion_lr is not None and not 0 < self.diffusion_lr < 1:
            raise UserError(f"--diffusion-lr must lie in (0, 1) (got {self.diffusion_lr})")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"--ema-decay must lie in [0, 1) (got {self.ema_decay}); 0 turns EMA off")
        if not self.timesteps or any(not 1 <= t < self.diffusion_steps for t in self.timesteps):
            raise UserError(f"--timesteps {','.join(map(str, self.timesteps))}: each must lie in 1..{self.diffusion_steps - 1}")

    @property
    def num_layers(self) -> int:
        return 2 * self.depth + 1

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Config:
        if name not in PRESETS:
            raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=name, **values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """A config from its JSON form (lists where the fields are tuples)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"config has unknown keys {sorted(unknown)}: written by a newer dcube-edge?")
        tuples = {f.name for f in fields(cls) if "tuple" in str(f.type)}
        values: dict[str, Any] = {k: tuple(v) if k in tuples and v is not None else v for k, v in d.items()}
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        return replace(self, **changes)


CONFIG = "config.json"  # a run directory's config (docs/architecture.md, the engine contract)


class RunError(UserError):
    """A run directory that cannot be used, phrased for the user."""


def load_config(run: str | Path) -> Config:
    """A run directory's config, read without torch (so `export` can check its options before loading a model)."""
    run = Path(run)
    if not (run / CONFIG).is_file():
        raise RunError(f"{run} is not a run directory (no {CONFIG}); create one with `dcube-edge train` or `init`")
    try:
        d = json.loads((run / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{run / CONFIG} is not valid JSON ({e})") from None
    d.pop("versions", None)
    return Config.from_dict(d)
