"""How good is the trunk's x0 estimate? Against the best *linear* denoiser of the same images.

The trunk diagnostics (``trunk.json``) report x0-MSE / image variance at t = 500 on validation images
(1 = the mean image). This fits the linear MMSE (Wiener) estimate of x0 from x_t, with the mean and
pixel covariance of the training images, and scores it exactly as ``diagnostics.denoising`` scores the
trunk: the same validation images (the probes' subset), the same noise draws, clamped to [-1, 1].
A trunk that cannot beat this has not learned anything a PCA of the pixels does not already know.

    .venv/bin/python benchmarks/experiments/linear_denoiser.py ../shared/data/breastmnist [--size 32]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from dcube_edge.runtimes.preprocess import PreprocessSpec

from dcube_edge import diagnostics
from dcube_edge.config import Config
from dcube_edge.data import discover
from dcube_edge.diffusion import Schedule
from dcube_edge.train import PROBE_IMAGES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = Config.from_preset(args.preset, seed=args.seed)
    ds = discover(args.data, cfg.val_fraction, cfg.split_seed)
    spec = PreprocessSpec(cfg.image_size)
    x_train, x_val = ds.train.load(spec), ds.val.load(spec)
    rng = np.random.default_rng(cfg.split_seed)  # the validation subset trunk_diagnosis scores
    rng.permutation(len(x_train))
    va = np.sort(rng.permutation(len(x_val))[: PROBE_IMAGES[1]])
    x_val = x_val[va]
    flat = x_train.reshape(len(x_train), -1).astype(np.float64)
    mu = flat.mean(0)
    cov = np.cov(flat, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0, None)
    schedule = Schedule(cfg)
    x0_all = torch.from_numpy(x_val)
    variance = float((x0_all - x0_all.mean(0)).pow(2).mean())
    noise_all = torch.randn(x0_all.shape, generator=torch.Generator().manual_seed(cfg.seed))
    rows = []
    for t_val in diagnostics.BANDS:
        ab = float(schedule.alphas_bar[t_val])
        x_t = schedule.q_sample(x0_all, torch.full((len(x0_all),), t_val, dtype=torch.long), noise_all)
        y = x_t.reshape(len(x0_all), -1).double().numpy() / ab ** 0.5 - mu  # x0 + noise of variance (1-ab)/ab
        gain = evals / (evals + (1 - ab) / ab)  # Wiener gain per principal component
        x0_hat = mu + ((y @ evecs) * gain) @ evecs.T
        mse = float(((np.clip(x0_hat, -1, 1) - x0_all.reshape(len(x0_all), -1).double().numpy()) ** 2).mean())
        rows.append({"t": t_val, "linear_x0_mse": mse, "linear_x0_mse_over_variance": mse / variance})
    print(json.dumps({"data": args.data, "image_size": cfg.image_size, "train_images": len(x_train),
                      "val_images": len(x_val), "image_variance": variance, "bands": rows}))


if __name__ == "__main__":
    main()
