"""The colour rule: how a colour picture becomes the one grey channel the models read. One rule for every source — a
colour PNG, JPEG or TIFF and every colour DICOM form (RGB; YBR_FULL and YBR_FULL_422 after pydicom's conversion to
RGB; YBR_RCT and YBR_ICT after the JPEG 2000 decoder's inverse component transform; PALETTE COLOR after its lookup
table) — named in the engine's preprocessing facts (``PreprocessSpec.colour``):

``bt601``
    ITU-R BT.601 luma, Y = (299 R + 587 G + 114 B) / 1000, on the samples as stored, mapped from the range their bit
    depth holds to [0, 1] like a grey sample (the intensity contract, :mod:`.images`): integer weights, one float64
    division by 1000 · (2^bits − 1), one rounding to float32. So the same RGB pixels give the same array to the bit
    from every source, and a grey picture stored as colour (R = G = B, as scanners store B-mode) gives the grey
    picture's array to the bit.

``pillow-l``
    What engines exported before the rule was recorded read (their manifests carry no ``colour``): Pillow's
    ``convert("L")``, the same weights in 16-bit fixed point rounded to an 8-bit value, then /255. 8-bit colour only.
"""
from __future__ import annotations

import numpy as np

from .images import ImageError, unit_range

COLOUR = "bt601"
LEGACY_COLOUR = "pillow-l"
COLOURS = (COLOUR, LEGACY_COLOUR)
WEIGHTS = (299, 587, 114)  # ITU-R BT.601 (the weights Pillow's "L" conversion documents), over 1000


def luma(rgb: np.ndarray, top: int, rule: str = COLOUR) -> np.ndarray:
    """(H, W, 3) unsigned samples in [0, ``top``] → float32 (H, W) in [0, 1] by ``rule`` (module docstring)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"expected an RGB array (rows, columns, 3), got shape {rgb.shape}")
    if rule == LEGACY_COLOUR:
        if top != 255:
            raise ImageError(f"this engine reads colour by Pillow's 8-bit conversion (exported before the colour rule "
                             f"was recorded) and this picture has {int(top).bit_length()}-bit colour samples: re-export "
                             "the engine with this dcube-edge to read it")
        from PIL import Image

        gray = np.asarray(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").convert("L"))
        return unit_range(gray, 0, 255)
    if rule != COLOUR:
        raise ImageError(f"unknown colour rule {rule!r} (this dcube-edge knows {', '.join(COLOURS)})")
    samples = np.asarray(rgb, dtype=np.int64)
    weighted = samples[..., 0] * WEIGHTS[0] + samples[..., 1] * WEIGHTS[1] + samples[..., 2] * WEIGHTS[2]
    return unit_range(weighted, 0, sum(WEIGHTS) * int(top))
