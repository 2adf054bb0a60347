"""What every image decoder shares: the error a bad file raises and the size limits (a leaf module, so
the Pillow and DICOM decoders do not import each other)."""
from __future__ import annotations

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm",)
MAX_PIXELS = 64_000_000  # refuse decompression bombs well before Pillow's own limit


class ImageError(ValueError):
    """A file that cannot be turned into a model input; the message says why."""
