"""Where the tissue is on an ultrasound screen: the Sequence of Ultrasound Regions (0018,6011) of the US Region
Calibration module (PS3.3 C.8.5.5). A scanner stores its whole screen — text, calipers, a depth scale, colour bars,
Doppler strips — and says in this sequence which rectangles hold which data; a dataset such as BUSI holds the tissue,
cropped. The region policy (``PreprocessSpec.regions``, bound into the engine's facts) says what the model reads:

``us-tissue``
    every region whose Region Spatial Format (0018,6012) is 2D (1) and whose Region Data Type (0018,6014) is tissue
    (1), each one a model input (two for a dual view); the bounds Region Location Min X0 / Min Y0 / Max X1 / Max Y1
    (0018,6018 / 601A / 601C / 601E) are pixel coordinates, the max ones inclusive. A box that ends past the last
    column or row (real files end one past it, or keep the bounds of the screen before it was resized) is clipped
    to the image; one that makes no sense (max before min, starting outside the image, under :data:`MIN_SIDE`
    pixels a side once clipped, bounds missing or not numbers) is not used, with a note. Without a usable tissue
    region (no sequence, only Doppler, M-mode or colour-bar regions, or only unusable boxes): the whole frame,
    with a note where the object had regions.
``whole-frame``
    the whole frame, regions ignored: what engines exported before the policy was recorded read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TISSUE = "us-tissue"
WHOLE_FRAME = "whole-frame"
REGION_POLICIES = (TISSUE, WHOLE_FRAME)
SPATIAL_2D, DATA_TISSUE = 1, 1  # PS3.3 C.8.5.5.1.1 Region Spatial Format, C.8.5.5.1.2 Region Data Type
MIN_SIDE = 16  # pixels: a smaller "tissue region" is not a picture the model can read
BOUNDS = ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")


@dataclass(frozen=True)
class Box:
    """A rectangle of pixels, inclusive bounds as PS3.3 gives them: columns x0..x1, rows y0..y1 (0-based)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def crop(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y0:self.y1 + 1, self.x0:self.x1 + 1]

    def to_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass(frozen=True)
class Regions:
    """What a frame is read as: the tissue regions used, as (item number in the sequence, 1-based; box), or none
    (the whole frame); ``notes`` say why a region was not used or why the whole frame was read."""

    boxes: tuple[tuple[int, Box], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """Which part of the frame the model read, in words a result carries."""
        return "ultrasound tissue regions" if self.boxes else "whole frame"


def _int(item, keyword: str) -> int | None:
    """An item's integer attribute, or None where it is absent or not a number."""
    try:
        value = item.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _box(item, number: int, rows: int, cols: int) -> tuple[Box | None, str | None]:
    """(the item's box clipped to the image, None) or (None, why it makes no sense)."""
    x0, y0, x1, y1 = (_int(item, k) for k in BOUNDS)
    if None in (x0, y0, x1, y1):
        return None, f"tissue region {number} has no usable Region Location bounds"
    if x1 < x0 or y1 < y0:
        return None, f"tissue region {number} ends before it starts ({x0},{y0})-({x1},{y1})"
    if x0 < 0 or y0 < 0 or x0 >= cols or y0 >= rows:
        return None, f"tissue region {number} starts at ({x0},{y0}), outside the {cols}x{rows} image"
    box = Box(x0, y0, min(x1, cols - 1), min(y1, rows - 1))
    if min(box.x1 - box.x0, box.y1 - box.y0) + 1 < MIN_SIDE:
        return None, (f"tissue region {number} ({x0},{y0})-({x1},{y1}) is under {MIN_SIDE} pixels a side in the "
                      f"{cols}x{rows} image")
    return box, None


def tissue_regions(ds, rows: int, cols: int, policy: str = TISSUE) -> Regions:
    """The tissue regions of ``ds`` (a pydicom dataset, or anything with ``get``) for a ``rows`` x ``cols`` frame
    by ``policy`` (module docstring)."""
    items = list(ds.get("SequenceOfUltrasoundRegions") or []) if policy == TISSUE else []
    boxes: list[tuple[int, Box]] = []
    notes: list[str] = []
    tissue = 0
    for number, item in enumerate(items, 1):
        if _int(item, "RegionSpatialFormat") != SPATIAL_2D or _int(item, "RegionDataType") != DATA_TISSUE:
            continue
        tissue += 1
        box, why = _box(item, number, rows, cols)
        if why:
            notes.append(why)
        elif box not in [b for _, b in boxes]:  # a region repeated with the same bounds is read once
            boxes.append((number, box))
    if items and not boxes:
        notes.append(f"no usable 2D tissue region among the object's {len(items)} ultrasound region(s): read the "
                     "whole frame" if tissue == 0 else "no usable tissue region: read the whole frame")
    return Regions(tuple(boxes), tuple(notes))
