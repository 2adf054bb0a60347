"""The one reader behind training, export, ``classify``, ``evaluate`` and ``bench``: a file becomes one or more
*views*, each a grey picture in [0, 1] the model reads — every frame of a multi-frame object (PS3.3 C.7.6.6), and
in each frame every 2D tissue region of an ultrasound object (:mod:`.regions`), else the whole frame. A file's
views are known from its attributes alone (:meth:`Source.views`); its pixels are decoded frame by frame while
:meth:`Source.read` is iterated. What the libraries warn while a file is read is kept as the file's warnings."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .capture import library_messages, one_line
from .colour import COLOUR
from .images import DICOM_SUFFIXES, MAX_FRAMES, ImageError, is_dicom
from .regions import TISSUE, Box, Regions, tissue_regions


@dataclass(frozen=True)
class View:
    """Where one model input lies in its file: ``frame`` the 1-based frame number of a multi-frame object (None for
    a single-frame image), ``region`` the 1-based item number of the tissue region in the object's Sequence of
    Ultrasound Regions (None: the whole frame), ``box`` the pixels read (inclusive x0, y0, x1, y1; None: all)."""

    frame: int | None = None
    region: int | None = None
    box: Box | None = None

    @property
    def key(self) -> tuple[int | None, int | None]:
        return self.frame, self.region

    def describe(self) -> str:
        parts = ([f"frame {self.frame}"] if self.frame is not None else []) + (
            [f"region {self.region}"] if self.region is not None else [])
        return ", ".join(parts) or "image"

    def to_dict(self) -> dict:
        return {"frame": self.frame, "region": self.region, "box": self.box.to_list() if self.box else None}


@dataclass
class Source:
    """One file as the model reads it. ``number_of_frames`` is 1 for a single-frame image; ``regions`` says which
    part of each frame is read (its notes: why a region was not used); ``warnings`` what the libraries said while
    the file was read (pydicom on a malformed attribute, a decoder)."""

    path: Path
    number_of_frames: int = 1
    multiframe: bool = False
    regions: Regions = field(default_factory=Regions)
    warnings: list[str] = field(default_factory=list)
    colour_rule: str = COLOUR  # the colour rule its colour frames are read by
    colour: bool = False  # its pixels are colour (RGB, YBR, palette), turned grey by the colour rule
    _frames: object = None  # () -> Iterator[np.ndarray]: the frames as decoded, one at a time
    _gray: object = None  # (a frame or a crop of it, as decoded; colour rule) -> float32 grey in [0, 1]; None: grey

    @property
    def region_source(self) -> str:
        return self.regions.source

    def views(self) -> list[View]:
        """Every view, in reading order (frame by frame, regions in sequence order), from the attributes alone."""
        boxes = self.regions.boxes or ((None, None),)
        frames = range(1, self.number_of_frames + 1) if self.multiframe else (None,)
        return [View(f, r, b) for f in frames for r, b in boxes]

    def read(self) -> Iterator[tuple[View, np.ndarray]]:
        """(view, float32 (H, W) in [0, 1]) for every view, decoding one frame at a time; raises ImageError where a
        frame cannot be decoded (the views before it have been yielded)."""
        boxes = self.regions.boxes or ((None, None),)
        for number, frame in enumerate(self.decoded(), 1):
            for region, box in boxes:  # crop, then convert: the conversion is per pixel, the crop is smaller
                part = box.crop(frame) if box else frame
                yield View(number if self.multiframe else None, region, box), self.grey(part)

    def decoded(self) -> Iterator[np.ndarray]:
        """Every whole frame in order as decoded (RGB for the YBR forms, palette indices, stored grey values; a
        picture file's grey), one at a time; raises ImageError where one cannot be decoded or frames are missing."""
        frames = self._frames()  # type: ignore[operator]
        while (frame := self._noted(next, frames, None)) is not None:
            yield frame

    def grey(self, part: np.ndarray, colour: str | None = None) -> np.ndarray:
        """A decoded frame (or a crop of it) as float32 grey in [0, 1], by the colour rule ``colour`` (default: the
        source's own); ImageError where the rule cannot read it."""
        if self._gray is None:
            return part
        return self._noted(self._gray, part, colour or self.colour_rule)

    def _noted(self, fn, *args):  # noqa: ANN001, ANN202
        """``fn(*args)`` with what the libraries say kept in :attr:`warnings` and ending an error's line."""
        with library_messages() as said:
            try:
                return fn(*args)
            except ImageError as e:
                raise type(e)(with_notes(str(e), [*self.warnings, *said])) from None
            finally:
                self.warnings += [n for n in said if n not in self.warnings]


def open_source(path: str | Path, colour: str = COLOUR, regions: str = TISSUE, max_frames: int = MAX_FRAMES) -> Source:
    """A file's :class:`Source` by the colour rule and the region policy (``PreprocessSpec.colour`` / ``.regions``):
    a DICOM file (by suffix or content) has its attributes read and checked here, its pixels when read; a picture
    file is decoded here. Raises ImageError with one line saying what is wrong, ending with what the libraries said."""
    path = Path(path)
    with library_messages() as said:
        try:
            if path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path):
                return _dicom_source(path, colour, regions, max_frames, said)
            from .pictures import read_picture

            picture, in_colour = read_picture(path, colour)
            return Source(path, warnings=said, colour_rule=colour, colour=in_colour, _frames=lambda: iter([picture]))
        except ImageError as e:
            raise type(e)(with_notes(str(e), said)) from None


def _dicom_source(path: Path, colour: str, regions: str, max_frames: int, said: list[str]) -> Source:
    from .dicom import open_dicom

    image = open_dicom(path, max_frames)
    found = tissue_regions(image.ds, image.rows, image.cols, regions)
    return Source(path, image.number_of_frames, image.multiframe, found, said, colour_rule=colour,
                  colour=image.samples > 1 or image.photometric == "PALETTE COLOR", _frames=image.stored_frames,
                  _gray=image.to_gray)


def with_notes(message: str, notes: list[str]) -> str:
    """An error message on one line, with what the libraries said while reading (pydicom's warnings) after it."""
    text = one_line(message)
    extra = [n for n in notes if n not in text]
    return text + (f" [{'; '.join(extra)}]" if extra else "")
