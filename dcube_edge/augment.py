"""Synthetic images from the class-conditional trunk (optional augmentation, docs/method.md).

Writes ``OUT/<class>/synthetic_s<seed>_<index>.png``. Each batch of images is seeded from
(seed, class, first index), so an interrupted run resumes by regenerating only batches with missing
files, and an existing file is never overwritten."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcube_edge.errors import UserError
from dcube_edge.runtimes.files import atomic_path, sha256, write_json

from . import rundir
from .config import Config
from .data import discover
from .diffusion import Schedule, sample_ddim, sample_ddpm
from .uvit import UViT


def balance_counts(cfg: Config, data: str | None) -> dict[str, int]:
    """Images per class that bring every class of the training split up to the largest one."""
    root = data or cfg.data_root
    if not root or not Path(root).is_dir():
        raise UserError("--balance needs the training data: pass --data DATA (the run's data folder is gone)")
    counts = discover(root, cfg.val_fraction, cfg.split_seed).train.counts(len(cfg.classes))
    return {c: max(counts) - n for c, n in zip(cfg.classes, counts)}


def target_name(seed: int, index: int) -> str:
    return f"synthetic_s{seed}_{index:05d}.png"


def augment(run: str | Path, out: str | Path, per_class: int | None, sampler: str = "ddim", steps: int = 50,
            seed: int = 0, batch_size: int = 16, progress: Callable[[int, int], None] | None = None,
            data: str | None = None) -> dict:
    """``per_class`` images of every class, or (None) as many as bring each class of the training data (``data``
    or the run's) up to the largest. Returns what was written, with the counts asked for."""
    run, out = Path(run), Path(out)
    cfg = rundir.load_config(run)
    counts = balance_counts(cfg, data) if per_class is None else {c: per_class for c in cfg.classes}
    if sampler not in ("ddpm", "ddim"):
        raise UserError(f"unknown sampler {sampler!r}; choose ddpm or ddim")
    trunk = UViT(cfg, len(cfg.classes))
    rundir.load_weights(trunk, run / rundir.DIFFUSION)
    trunk.eval()
    schedule = Schedule(cfg)
    per_image = schedule.steps if sampler == "ddpm" else steps
    todo = [(c, i) for c in cfg.classes for i in range(counts.get(c, 0))]
    missing = {(c, i) for c, i in todo if not (out / c / target_name(seed, i)).exists()}
    total, done = len(missing) * per_image, 0
    written = 0
    for k, cls in enumerate(cfg.classes):
        n = counts.get(cls, 0)
        for start in range(0, n, batch_size):
            idx = list(range(start, min(n, start + batch_size)))
            if not any((cls, i) in missing for i in idx):
                continue
            y = torch.full((len(idx),), k, dtype=torch.long)
            gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, k, start]).generate_state(1)[0]))

            def eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor = y) -> torch.Tensor:
                return trunk(x, t, y)[0]

            def tick(_: int, m: int = len([i for i in idx if (cls, i) in missing])) -> None:
                nonlocal done
                done += m
                if progress:
                    progress(done, total)

            shape = (len(idx), 1, cfg.image_size, cfg.image_size)
            with torch.no_grad():
                x = (sample_ddpm(eps, schedule, shape, gen, tick) if sampler == "ddpm"
                     else sample_ddim(eps, schedule, shape, gen, steps, tick))
            pixels = ((x.numpy()[:, 0] + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
            (out / cls).mkdir(parents=True, exist_ok=True)
            for i, img in zip(idx, pixels):
                path = out / cls / target_name(seed, i)
                if path.exists():
                    continue  # never overwrite
                with atomic_path(path) as tmp:
                    Image.fromarray(img).save(tmp, format="PNG")
                written += 1
    record = {"run": str(run.resolve()), "diffusion_sha256": sha256(run / rundir.DIFFUSION), "sampler": sampler,
              "steps": per_image, "seed": seed, "counts": counts, "image_size": cfg.image_size}
    write_json(out / "augment.json", record)
    return {**record, "written": written}
