"""Built-in demo data: deterministic synthetic breast-ultrasound-like phantoms (numpy only).

normal    — speckled tissue with horizontal layers, no lesion;
benign    — smooth oval hypoechoic lesion with mild posterior enhancement;
malignant — irregular, spiculated hypoechoic lesion with posterior acoustic shadowing.
No real patient data is involved; the images only have to be learnable and look the part."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("benign", "malignant", "normal")


def _smooth(a: np.ndarray, passes: int = 2) -> np.ndarray:
    for _ in range(passes):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 5
    return a


def phantom(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size) uint8 image of the given class."""
    y, x = np.mgrid[0:size, 0:size] / size
    tissue = 0.45 + 0.12 * np.sin(2 * np.pi * (y * rng.uniform(2, 4) + rng.uniform(0, 1))) + 0.1 * y
    lesion = np.zeros_like(x)
    shadow = np.zeros_like(x)
    if kind != "normal":
        cy, cx = rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.7)
        ry, rx = rng.uniform(0.1, 0.16), rng.uniform(0.14, 0.24)
        theta = np.arctan2((y - cy) / ry, (x - cx) / rx)
        r = np.hypot((y - cy) / ry, (x - cx) / rx)
        if kind == "benign":
            edge = 1.0 + 0.05 * np.sin(2 * theta + rng.uniform(0, 6.28))
        else:
            spikes = rng.integers(5, 10)
            edge = (1.0 + 0.25 * np.sin(spikes * theta + rng.uniform(0, 6.28))
                    + 0.15 * np.sin(3 * theta + rng.uniform(0, 6.28)))
        lesion = 1 / (1 + np.exp((r - edge) * (8 if kind == "malignant" else 14)))
        below = 1 / (1 + np.exp(-(y - cy - ry * 0.5) * 40))
        beam = np.exp(-(((x - cx) / (rx * 0.8)) ** 4)) * np.exp(-np.clip(y - cy, 0, None) * 1.5)
        shadow = below * beam * (0.6 if kind == "malignant" else -0.25)
    mean = np.clip(tissue * (1 - 0.75 * lesion) * (1 - shadow), 0.02, 1)
    speckle = _smooth(rng.rayleigh(0.8, size=(size, size)), 1)
    img = mean * speckle
    img *= 1 - 0.35 * np.clip((np.abs(x - 0.5) * 2) ** 4, 0, 1)  # probe fall-off at the edges
    return np.clip(img * 200, 0, 255).astype(np.uint8)


def write_demo(out: str | Path, per_class: int = 60, size: int = 64, seed: int = 0,
               val_per_class: int = 0, dicom: bool = False) -> dict[str, int]:
    """Write ``out/<class>/<class>_NNNN.png`` (or ``out/{train,val}/...`` when ``val_per_class``); with
    ``dicom``, secondary-capture instances (``.dcm``) of the same pixels instead, as a scanner would send them."""
    out = Path(out)
    splits = {"train": per_class, "val": val_per_class} if val_per_class else {"": per_class}
    written = {}
    for s_idx, (split, n) in enumerate(splits.items()):
        for c_idx, kind in enumerate(CLASSES):
            folder = out / split / kind if split else out / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, s_idx, c_idx, i])
                path = folder / f"{kind}_{i:04d}.png"
                tmp = path.with_suffix(".tmp.png")
                Image.fromarray(phantom(kind, size, rng)).save(tmp)
                tmp.replace(path)
            written[f"{split or 'all'}/{kind}"] = n
    if dicom:
        from dcube_edge.runtimes.dicom import write_secondary_capture

        for png in sorted(out.rglob("*.png")):
            write_secondary_capture(np.asarray(Image.open(png).convert("L")), png.with_suffix(".dcm"))
            png.unlink()
    return written
