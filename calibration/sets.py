"""Calibration sets: a stratified, seeded sample of the training split, preprocessed exactly like
inference, stored as an ``.npz`` (no pickles) whose sha256 goes into the manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dcube_edge.errors import UserError
from dcube_edge.runtimes.files import atomic_path, sha256
from dcube_edge.runtimes.preprocess import PreprocessSpec, load_samples

DEFAULT_SIZE = 256


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` indices with class proportions kept (every class at least once), deterministic."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    size = min(size, len(labels))
    quota = np.maximum(1, np.floor(counts / counts.sum() * size)).astype(int)
    while quota.sum() < size:  # hand out the remainder to the largest classes
        quota[np.argmax(counts - quota)] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), min(q, n), replace=False)
              for c, q, n in zip(classes, quota, counts)]
    return np.sort(np.concatenate(picked))


def build(paths: list[Path], labels: np.ndarray, spec: PreprocessSpec, size: int, seed: int,
          out: str | Path, views: list | None = None) -> Path:
    """A calibration set of ``size`` samples (``paths[i]`` read as ``views[i]``: a dataset split's, where a file
    gives several views) written to ``out``."""
    idx = stratified_indices(labels, size, seed)
    views = views or [None] * len(paths)
    images = load_samples([paths[i] for i in idx], [views[i] for i in idx], spec).astype(np.float32)
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, labels=labels[idx].astype(np.int64),
                     files=np.asarray([str(paths[i]) for i in idx]), seed=np.int64(seed),
                     spec=np.asarray([str(spec.to_dict())]))
    return out


def read(path: str | Path, spec: PreprocessSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a calibration file; checks the image size against ``spec``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"].astype(np.float32), z["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path} is not a dcube-edge calibration file ({e})") from None
    if spec is not None and images.shape[1:] != (1, spec.size, spec.size):
        raise UserError(f"{path} holds {images.shape[1:]} images; this model needs (1, {spec.size}, {spec.size}): "
                         "rebuild it with `dcube-edge calibrate`")
    return images, labels


def describe(path: str | Path) -> dict:
    images, labels = read(path)
    return {"file": Path(path).name, "sha256": sha256(path), "size": int(len(images)),
            "class_counts": np.bincount(labels).tolist()}
