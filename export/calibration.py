"""The calibration set an int8 export quantizes with: a given ``.npz`` from `dcube-edge calibrate`, or one built from a
dataset folder's training split and cached in the run directory. Runs are read here, in the export layer, so that
:mod:`dcube_edge.calibration` stays below the core (it knows preprocessed arrays, not runs)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dcube_edge.calibration import sets as calib_sets
from dcube_edge.config import Config, load_config
from dcube_edge.data import discover
from dcube_edge.runtimes.preprocess import PreprocessSpec

from .options import ExportError, ExportOptions


def calibration_file(run: Path, cfg: Config, opts: ExportOptions) -> Path:
    """An existing .npz, or one built (and cached in the run dir) from a dataset folder's train split."""
    spec = PreprocessSpec(cfg.image_size)
    if opts.calibration and Path(opts.calibration).is_file():
        calib_sets.read(opts.calibration, spec)
        return Path(opts.calibration)
    source = opts.calibration or cfg.data_root
    if not source or not Path(source).is_dir():
        raise ExportError("int8 needs calibration images: pass --calibration DATA (a dataset folder) or a .npz "
                          "from `dcube-edge calibrate`")
    train = discover(source, cfg.val_fraction, cfg.split_seed).train
    key = f"{Path(source).resolve()}|{opts.calibration_size}|{cfg.seed}|{cfg.image_size}"
    cached = run / "calibration" / f"calib-{opts.calibration_size}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    if not cached.is_file():
        calib_sets.build(train.paths, train.labels, spec, opts.calibration_size, cfg.seed, cached, train.views)
    return cached


def for_run(run: Path, data: Path, size: int, out: Path) -> dict[str, Any]:
    """`dcube-edge calibrate`: a stratified sample of ``data``'s training split, preprocessed for ``run``'s model,
    written to ``out``; its description."""
    cfg = load_config(run)
    split = discover(data, cfg.val_fraction, cfg.split_seed).train
    calib_sets.build(split.paths, split.labels, PreprocessSpec(cfg.image_size), size, cfg.seed, out, split.views)
    return calib_sets.describe(out)
