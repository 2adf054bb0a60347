"""Built-in demo data: deterministic synthetic breast-ultrasound-like phantoms (numpy only).

normal    — speckled tissue with horizontal layers, no lesion;
benign    — smooth oval hypoechoic lesion with mild posterior enhancement;
malignant — irregular, spiculated hypoechoic lesion with posterior acoustic shadowing.
No real patient data is involved; the images only have to be learnable and look the part."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("benign", "malignant", "normal")


def _smooth(a: np.ndarray, passes: int = 2) -> np.ndarray:
    for _ in range(passes):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 5
    return a


@dataclass(frozen=True)
class Lesion:
    """A lesion's centre and radii (fractions of the image) and its margin: ``edge`` is (lobes, depth, phase) of
    the outline's ripple, a malignant one's followed by (depth, phase) of a finer three-lobe ripple."""
    cy: float
    cx: float
    ry: float
    rx: float
    edge: tuple[float, ...]


@dataclass(frozen=True)
class Shape:
    """A phantom's random shape: the tissue layering's frequency and phase, and its lesion (none for normal)."""
    freq: float
    phase: float
    lesion: Lesion | None = None


def draw(kind: str, rng: np.random.Generator) -> Shape:
    """A phantom's random shape: tissue layering and, for a lesion, its centre, radii and margin."""
    freq, phase = rng.uniform(2, 4), rng.uniform(0, 1)
    if kind == "normal":
        return Shape(freq, phase)
    cy, cx, ry, rx = rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.16), rng.uniform(0.14, 0.24)
    if kind == "benign":
        edge: tuple[float, ...] = (2, 0.05, rng.uniform(0, 6.28))
    else:
        spikes = int(rng.integers(5, 10))
        edge = (spikes, 0.25, rng.uniform(0, 6.28), 0.15, rng.uniform(0, 6.28))
    return Shape(freq, phase, Lesion(cy, cx, ry, rx, edge))


def render(kind: str, size: int, p: Shape, speckle: np.ndarray, visibility: float = 1.0) -> np.ndarray:
    """One (size, size) uint8 image of shape ``p`` with ``speckle`` (Rayleigh-distributed, smoothed here);
    ``visibility`` in [0, 1] scales the lesion's cross-section (a probe sweeping through it: 0 shows none)."""
    y, x = np.mgrid[0:size, 0:size] / size
    tissue = 0.45 + 0.12 * np.sin(2 * np.pi * (y * p.freq + p.phase)) + 0.1 * y
    lesion = np.zeros_like(x)
    shadow = np.zeros_like(x)
    if p.lesion is not None and visibility > 0:
        cy, cx, ry, rx = p.lesion.cy, p.lesion.cx, p.lesion.ry * visibility, p.lesion.rx * visibility
        theta = np.arctan2((y - cy) / ry, (x - cx) / rx)
        r = np.hypot((y - cy) / ry, (x - cx) / rx)
        e = p.lesion.edge
        edge = 1.0 + e[1] * np.sin(e[0] * theta + e[2]) + (e[3] * np.sin(3 * theta + e[4]) if len(e) > 3 else 0)
        lesion = 1 / (1 + np.exp(np.clip((r - edge) * (8 if kind == "malignant" else 14), -60, 60)))
        below = 1 / (1 + np.exp(-(y - cy - ry * 0.5) * 40))
        beam = np.exp(-(((x - cx) / (rx * 0.8)) ** 4)) * np.exp(-np.clip(y - cy, 0, None) * 1.5)
        shadow = below * beam * (0.6 if kind == "malignant" else -0.25) * visibility
    mean = np.clip(tissue * (1 - 0.75 * lesion) * (1 - shadow), 0.02, 1)
    img = mean * _smooth(speckle, 1)
    img *= 1 - 0.35 * np.clip((np.abs(x - 0.5) * 2) ** 4, 0, 1)  # probe fall-off at the edges
    return np.clip(img * 200, 0, 255).astype(np.uint8)


def phantom(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size) uint8 image of the given class."""
    p = draw(kind, rng)
    return render(kind, size, p, rng.rayleigh(0.8, size=(size, size)))


def sweep(frames: int, rng: np.random.Generator) -> np.ndarray:
    """A probe sweeping across a lesion: its cross-section's scale on each of ``frames`` frames, 0 where the probe
    is past it; the lesion is visible in a random 40-100 % of the frames."""
    centre, half = rng.uniform(0.3, 0.7) * frames, rng.uniform(0.2, 0.5) * frames
    t = np.arange(frames)
    return np.sqrt(np.clip(1 - ((t - centre) / max(half, 1e-9)) ** 2, 0, None))


def loop(kind: str, size: int, frames: int, rng: np.random.Generator, correlation: float = 0.9) -> np.ndarray:
    """A cine loop, (frames, size, size) uint8: a probe sweeping across one phantom (:func:`sweep`: a lesion's
    cross-section grows and shrinks); the speckle decorrelates from frame to frame (complex Gaussian field, AR(1)
    with ``correlation``; its magnitude is Rayleigh like a still's)."""
    p = draw(kind, rng)
    visibility = sweep(frames, rng)
    field = rng.normal(size=(2, size, size))
    out = np.empty((frames, size, size), np.uint8)
    for t in range(frames):
        if t:
            field = correlation * field + np.sqrt(1 - correlation ** 2) * rng.normal(size=(2, size, size))
        out[t] = render(kind, size, p, 0.8 * np.hypot(field[0], field[1]), float(visibility[t]))
    return out


def write_demo(out: str | Path, per_class: int = 60, size: int = 64, seed: int = 0, val_per_class: int = 0,
               dicom: bool = False, screen: str | None = None, frames: int = 1, views: int = 1) -> dict[str, int]:
    """Write ``out/<class>/<class>_NNNN.png`` (or ``out/{train,val}/...`` when ``val_per_class``); with
    ``dicom``, secondary-capture instances (``.dcm``) of the same pixels instead, as a scanner would send them; with
    ``screen`` ("rgb" or "jpeg"), ultrasound objects like a scanner's (:mod:`dcube_edge.scanner`): the phantom in
    the tissue region of an annotated screen (a single frame's tissue is the PNG's phantom), ``frames`` > 1 a cine
    loop, ``views`` 2 a dual view."""
    out = Path(out)
    splits = {"train": per_class, "val": val_per_class} if val_per_class else {"": per_class}
    written = {}
    for s_idx, (split, n) in enumerate(splits.items()):
        for c_idx, kind in enumerate(CLASSES):
            folder = out / split / kind if split else out / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, s_idx, c_idx, i])
                if screen:
                    _write_screens(folder / f"{kind}_{i:04d}.dcm", kind, rng, size, screen, frames, views)
                    continue
                path = folder / f"{kind}_{i:04d}.png"
                tmp = path.with_suffix(".tmp.png")
                Image.fromarray(phantom(kind, size, rng)).save(tmp)
                tmp.replace(path)
            written[f"{split or 'all'}/{kind}"] = n
    if dicom and not screen:
        from dcube_edge.runtimes.dicom import write_secondary_capture

        for png in sorted(out.rglob("*.png")):
            write_secondary_capture(np.asarray(Image.open(png).convert("L")), png.with_suffix(".dcm"))
            png.unlink()
    return written


def _write_screens(path: Path, kind: str, rng: np.random.Generator, size: int, form: str, frames: int, views: int) -> Path:
    """One ultrasound object of ``views`` phantoms (a loop of ``frames`` each, when over one) on a scanner's screen."""
    from dcube_edge.scanner import layout, screen, write_us

    pictures = [loop(kind, size, frames, rng) if frames > 1 else phantom(kind, size, rng)[None] for _ in range(views)]
    seed = int(rng.integers(1 << 31))
    screens = [screen([p[t] for p in pictures], t, seed) for t in range(len(pictures[0]))]
    return write_us(path, screens, layout(size, views), form)
