"""Image decoding and preprocessing, implemented once in numpy + Pillow.

Training, export parity checks and every runtime read files through :mod:`.reader` and call :func:`preprocess`,
so the torch and the workstation paths see identical arrays. The spec is a small dict recorded in the engine
manifest and bound into its facts: the image size, the intensity contract, the colour rule, the region policy and
the instance policy."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
from PIL import Image

from dcube_edge.errors import UserError

from . import instance
from .colour import COLOUR, COLOURS, LEGACY_COLOUR
from .images import IMAGE_SUFFIXES, INTENSITIES, INTENSITY, MAX_FRAMES, MAX_PIXELS, ImageError
from .reader import Source, View, open_source
from .regions import REGION_POLICIES, TISSUE, WHOLE_FRAME

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "ImageError", "PreprocessSpec", "load", "load_samples", "load_views",
           "preprocess", "read_image"]


@dataclass(frozen=True)
class PreprocessSpec:
    """Stored values to [0, 1] by the intensity contract (:mod:`.images`), colour to grey by the colour rule
    (:mod:`.colour`), the tissue regions of an ultrasound object by the region policy (:mod:`.regions`), resize to
    (size, size) with a bilinear filter, scale [0, 1] to [-1, 1]; an object's views combined by the instance
    policy (:mod:`.instance`)."""

    size: int
    mode: str = "grayscale"
    resample: str = "bilinear"
    range: tuple[float, float] = (-1.0, 1.0)
    intensity: str = INTENSITY
    colour: str = COLOUR
    regions: str = TISSUE
    instance: str = instance.DEFAULT

    def __post_init__(self) -> None:
        for name, value, known in (("intensity contract", self.intensity, INTENSITIES),
                                   ("colour rule", self.colour, COLOURS),
                                   ("region policy", self.regions, REGION_POLICIES),
                                   ("instance policy", self.instance, instance.POLICIES)):
            if value not in known:
                raise UserError(f"unknown {name} {value!r} (this dcube-edge reads {', '.join(known)}): install the "
                                "dcube-edge that wrote it")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["range"] = list(self.range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        # Engines written before a fact was recorded read as they did then (docs/engine-format.md, migrations): the
        # stored-range contract, Pillow's 8-bit grey conversion of colour, the whole frame; their multi-frame input,
        # refused then, is combined by the median (the one policy there is).
        return cls(size=int(d["size"]), mode=d.get("mode", "grayscale"), resample=d.get("resample", "bilinear"),
                   range=tuple(d.get("range", (-1.0, 1.0))), intensity=d.get("intensity", INTENSITY),
                   colour=d.get("colour", LEGACY_COLOUR), regions=d.get("regions", WHOLE_FRAME),
                   instance=d.get("instance", instance.MEDIAN))


def source(path: str | Path, spec: PreprocessSpec | None = None, max_frames: int = MAX_FRAMES) -> Source:
    """A file as ``spec`` reads it (default: a new engine's rules): its views and a frame-by-frame reader."""
    spec = spec or PreprocessSpec(0)
    return open_source(path, spec.colour, spec.regions, max_frames)


def read_image(path: str | Path, spec: PreprocessSpec | None = None) -> np.ndarray:
    """Decode a single-view file (one frame, one region or none) to float32 (H, W) in [0, 1]; raise
    :class:`ImageError` with a reason, also for a file that holds several views (:func:`load_views` reads those)."""
    src = source(path, spec)
    views = src.views()
    if len(views) != 1:
        raise ImageError(f"holds {len(views)} views ({views[0].describe()} … {views[-1].describe()}): read it with "
                         "load_views")
    [(_, gray)] = list(src.read())
    return gray


def preprocess(gray: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(H, W) in [0, 1] → float32 (1, size, size) in spec.range."""
    if gray.ndim != 2 or 0 in gray.shape:
        raise ImageError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    img = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32), mode="F")
    if img.size != (spec.size, spec.size):
        img = img.resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    lo, hi = spec.range
    return (arr * (hi - lo) + lo)[None].astype(np.float32)


def load(path: str | Path, spec: PreprocessSpec) -> np.ndarray:
    """Read and preprocess a single-view file to (1, size, size)."""
    return preprocess(read_image(path, spec), spec)


def load_views(path: str | Path, spec: PreprocessSpec, max_frames: int = MAX_FRAMES) -> Iterator[tuple[View, np.ndarray]]:
    """Every view of a file, preprocessed to (1, size, size), frame by frame."""
    for view, gray in source(path, spec, max_frames).read():
        yield view, preprocess(gray, spec)


def load_samples(paths: Sequence[Path], views: Sequence[View | None], spec: PreprocessSpec) -> np.ndarray:
    """(N, 1, size, size) for samples ``paths[i]`` read as ``views[i]`` (None: the file's one picture), each file
    decoded once; consecutive samples of one file must be its views in reading order (a dataset split's, a
    calibration set's subset). ImageError names the file."""
    out = []
    for path, group in groupby(zip(paths, views), key=lambda pv: pv[0]):
        wanted = [v for _, v in group]
        try:
            got = [(View(), load(path, spec))] if wanted == [None] else list(load_views(path, spec))
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from None
        by_key = {v.key: x for v, x in got}
        missing = [v for v in wanted if v is not None and v.key not in by_key]
        if missing:
            raise ImageError(f"{path}: has no {missing[0].describe()} as this spec reads it (the file changed, or its "
                             "region policy differs from the one its views were listed with)")
        out += [by_key[(v or View()).key] for v in wanted]
    return np.stack(out) if out else np.zeros((0, 1, spec.size, spec.size), np.float32)
