"""What every image decoder shares: the error a bad file raises, the size limits, how a file is recognised,
and the intensity contract that maps stored values to [0, 1] (a leaf module, so the Pillow and DICOM
decoders do not import each other).

The intensity contract (``PreprocessSpec.intensity``, recorded in every run and engine) is ``stored-range``:
a stored sample maps linearly from the full range its bit depth can hold to [0, 1] — 8-bit /255, 16-bit
/65535, a 12-bit DICOM /4095 — never from the range one image happens to use. A DICOM file's modality LUT
(rescale) maps that range along with the values; where the file carries a VOI transform (window or VOI LUT)
the transform's output range is used instead; MONOCHROME1 is inverted last. So the same pixels as PNG and as
DICOM (8- or 16-bit, with a full-range window or none, MONOCHROME1 or 2) give the same array to the bit."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dcube_edge.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm",)
MAX_PIXELS = 64_000_000  # refuse decompression bombs well before Pillow's own limit
MAX_FRAMES = 10_000  # frames per object, by default (--max-frames): beyond it a file is refused, not read for hours
INTENSITY = "stored-range"
INTENSITIES = (INTENSITY,)


class ImageError(UserError):
    """A file that cannot be turned into a model input; the message says why."""


def unit_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` mapped linearly so that ``lo`` → 0 and ``hi`` → 1 (clipped; ``hi < lo`` inverts), computed in
    float64 and rounded once to float32: every decoder goes through this one mapping, so equal ratios give equal
    bits (an inversion done after rounding would not)."""
    values = np.asarray(values, dtype=np.float64)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def is_dicom(path: str | Path) -> bool:
    """A DICOM Part 10 file by content: the ``DICM`` prefix after the 128-byte preamble (PS3.10 7.1), whatever
    the file is called (scanners write ``IM000001``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_image_file(path: Path) -> bool:
    """What :func:`~dcube_edge.runtimes.preprocess.read_image` takes: an image suffix or DICOM content."""
    return path.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES or is_dicom(path)
