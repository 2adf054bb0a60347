"""Image decoding and preprocessing, implemented once in numpy + Pillow.

Training, export parity checks and every runtime call :func:`preprocess`, so the torch and the
workstation paths see identical arrays. The spec is a small dict recorded in the run config and
the engine manifest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dcube_edge.errors import UserError

from .images import DICOM_SUFFIXES, IMAGE_SUFFIXES, INTENSITIES, INTENSITY, MAX_PIXELS, ImageError, is_dicom, unit_range

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "ImageError", "PreprocessSpec", "load", "preprocess", "read_image"]



@dataclass(frozen=True)
class PreprocessSpec:
    """Stored values to [0, 1] by the intensity contract (:mod:`.images`), grayscale, resize to (size, size)
    with a bilinear filter, scale [0, 1] to [-1, 1]."""

    size: int
    mode: str = "grayscale"
    resample: str = "bilinear"
    range: tuple[float, float] = (-1.0, 1.0)
    intensity: str = INTENSITY

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITIES:
            raise UserError(f"unknown intensity contract {self.intensity!r} (this dcube-edge reads "
                             f"{', '.join(INTENSITIES)}): install the dcube-edge that wrote it")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["range"] = list(self.range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        # Runs and engines written before the contract was recorded read PNGs by it already (their training
        # did); only their DICOM reading stretched each image, which the contract replaces.
        return cls(size=int(d["size"]), mode=d.get("mode", "grayscale"), resample=d.get("resample", "bilinear"),
                   range=tuple(d.get("range", (-1.0, 1.0))), intensity=d.get("intensity", INTENSITY))


def to_unit_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow image to a float32 (H, W) array in [0, 1] by the intensity contract: 8-bit /255, 16-bit
    /65535 (Pillow's 32-bit ``I`` mode holds 16-bit files here), float images taken as [0, 1] already."""
    if img.mode.startswith("I"):
        arr = np.asarray(img, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageError(f"{img.mode} image with values outside 0..65535: save it as an 8- or 16-bit image")
        return unit_range(arr, 0, 65535)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise ImageError("floating-point image with values outside [0, 1]: save it as an 8- or 16-bit image")
        return arr.astype(np.float32)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return unit_range(np.asarray(img.convert("L")), 0, 255)


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to float32 (H, W) in [0, 1]; raise :class:`ImageError` with a reason."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path):
        from .dicom import read_dicom  # optional extra

        return read_dicom(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError("file is empty (0 bytes)")
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:  # header only: refuse before decoding anything
                raise ImageError(f"image is {img.width}x{img.height}, above the {MAX_PIXELS:,}-pixel cap "
                                 "(possible decompression bomb)")
            if getattr(img, "n_frames", 1) > 1:
                raise ImageError(f"multi-frame image ({img.n_frames} frames): save frames as separate files")
            img.load()
            return to_unit_gray(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"refused as a decompression bomb: {e}") from None
    except PermissionError:
        raise ImageError("permission denied: the file is not readable") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder, not an image file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"not a readable image ({type(e).__name__}: {e})") from None


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
    """Read and preprocess one file to (1, size, size)."""
    return preprocess(read_image(path), spec)
