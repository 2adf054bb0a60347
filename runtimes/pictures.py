"""Picture files — PNG, JPEG, BMP, TIFF — through Pillow, to float32 (H, W) in [0, 1] by the intensity contract
(:mod:`.images`) and the colour rule (:mod:`.colour`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .colour import COLOUR, LEGACY_COLOUR, luma
from .images import MAX_PIXELS, ImageError, unit_range

GREY_MODES = ("L", "1")


def to_unit_gray(img: Image.Image, colour: str = COLOUR) -> np.ndarray:
    """Any Pillow image to a float32 (H, W) array in [0, 1]: 8-bit /255, 16-bit /65535 (Pillow's 32-bit ``I`` mode
    holds 16-bit files here), float images taken as [0, 1] already; transparency composited on black; colour by
    ``colour`` (a 16-bit-per-channel colour PNG or TIFF reaches here as 8-bit: Pillow reads it so)."""
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
    if colour == LEGACY_COLOUR or img.mode in GREY_MODES:  # what engines without a colour rule read
        return unit_range(np.asarray(img.convert("L")), 0, 255)
    return luma(np.asarray(img.convert("RGB")), 255, colour)


def read_picture(path: str | Path, colour: str = COLOUR) -> tuple[np.ndarray, bool]:
    """Decode one picture file to (float32 (H, W) in [0, 1], whether the file is in colour); raise
    :class:`ImageError` with a reason."""
    path = Path(path)
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
            gray = to_unit_gray(img, colour)
            return gray, img.mode not in GREY_MODES and not img.mode.startswith(("I", "F"))
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
