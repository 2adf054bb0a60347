"""How good is the trunk's x0 estimate? Against the best *linear* denoiser of the same images.

Prints ``diagnostics.linear_reference`` for a dataset — the Wiener filter on the principal components of the
training images, scored exactly as ``trunk.json`` scores the trunk (the probes' training and validation
subsets, the same noise draws, clamped to [-1, 1]) — without training anything. Every run's ``trunk.json``
carries the same numbers since 2026-11-27; this script gives them for a dataset before any run.

    .venv/bin/python research/experiments/linear_denoiser.py ../shared/data/breastmnist [--preset small]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from dcube_edge import diagnostics
from dcube_edge.config import Config
from dcube_edge.data import discover
from dcube_edge.diffusion import Schedule
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.step1 import PROBE_IMAGES


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
    rng = np.random.default_rng(cfg.split_seed)  # the subsets train.trunk_diagnosis draws
    tr = np.sort(rng.permutation(len(x_train))[: PROBE_IMAGES[0]])
    va = np.sort(rng.permutation(len(x_val))[: PROBE_IMAGES[1]])
    ref = diagnostics.linear_reference(Schedule(cfg), x_train[tr], x_val[va], seed=cfg.seed)
    ratios = [m / ref["image_variance"] for m in ref["x0_mse"]]
    print(json.dumps({"data": args.data, "image_size": cfg.image_size, **ref, "x0_mse_over_variance": ratios}))


if __name__ == "__main__":
    main()
