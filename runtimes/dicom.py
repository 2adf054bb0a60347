"""DICOM input via pydicom (extra ``dicom``): a file's attributes read and checked once (PS3.3 C.7.6.3 Image Pixel,
C.7.6.6 Multi-frame), its frames decoded one at a time from the file (pydicom's ``iter_pixels``: a 1,000-frame loop
is never in memory at once), each frame mapped to [0, 1] grey:

- MONOCHROME1/2: the intensity contract of :mod:`.images` — the stored range (BitsStored, PixelRepresentation) or
  the output range of the file's VOI transform (PS3.3 C.11.2); MONOCHROME1 inverted (C.7.6.3.1.2);
- RGB, YBR_FULL, YBR_FULL_422, YBR_RCT, YBR_ICT (3 samples, planar configuration 0 or 1): RGB as pydicom returns it
  (it converts YBR_FULL/YBR_FULL_422 itself, the JPEG 2000 decoder undoes YBR_RCT/YBR_ICT), then the colour rule
  (:mod:`.colour`) with the stored range of BitsStored;
- PALETTE COLOR: pydicom's ``apply_color_lut`` (8- or 16-bit entries, segmented or not, PS3.3 C.7.6.3.1.5-6,
  C.7.9), then the colour rule with the LUT's output range (its descriptor's bit depth).

A file whose attributes cannot be used raises :class:`~.images.ImageError` naming the attribute and the value."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .colour import COLOUR, luma
from .images import MAX_FRAMES, MAX_PIXELS, ImageError, unit_range

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR_FORMS = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")
PALETTE = "PALETTE COLOR"
PHOTOMETRICS = MONOCHROME + COLOUR_FORMS + (PALETTE,)  # what this reader decodes (conformance lists them)


class TooManyFrames(ImageError):
    """An object with more frames than the cap (``--max-frames``): refused before any frame is decoded."""


def stored_range(ds) -> tuple[int, int]:
    """The values a sample of ``ds`` can hold: [0, 2^BitsStored − 1] unsigned, [−2^(BitsStored−1), …] signed."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 0)
    if not 1 <= bits <= 32:
        raise ImageError(f"DICOM file has no usable BitsStored ({bits})")
    if int(ds.get("PixelRepresentation", 0) or 0):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def _first(value) -> float:
    return float(value[0]) if isinstance(value, (list, tuple)) or getattr(value, "VM", 1) > 1 else float(value)


def to_unit(stored: np.ndarray, ds, invert: bool = False) -> np.ndarray:
    """Stored grey sample values of ``ds`` to float32 [0, 1] (see the module docstring); ``invert`` (MONOCHROME1)
    swaps the output range before the one rounding."""

    def span(lo: float, hi: float) -> tuple[float, float]:
        return (hi, lo) if invert else (lo, hi)

    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "VOILUTSequence" in ds:  # a VOI LUT (PS3.3 C.11.2.1.1): its output bit depth is the range
        out = apply_voi_lut(apply_modality_lut(stored, ds), ds, prefer_lut=True)
        return unit_range(out, *span(0, 2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1))
    if "WindowCenter" in ds and "WindowWidth" in ds:  # the first window (PS3.3 C.11.2.1.2)
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if function == "SIGMOID" and w > 0:  # C.11.2.1.3.1, output range [0, 1]
            return unit_range(1.0 / (1.0 + np.exp(-4.0 * (values - c) / w)), *span(0.0, 1.0))
        if function == "LINEAR_EXACT" and w > 0:  # C.11.2.1.3.2
            return unit_range(values, *span(c - w / 2, c + w / 2))
        if function == "LINEAR" and w >= 1:  # C.11.2.1.2.1, written as (x − bottom) / (w − 1)
            return unit_range(values, *span(c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2))
        raise ImageError(f"DICOM window {function} with width {w} is not valid (PS3.3 C.11.2.1.2)")
    if "ModalityLUTSequence" in ds:  # a LUT's output range is its own bit depth (PS3.3 C.11.1.1.1)
        top = 2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
        return unit_range(apply_modality_lut(stored, ds), *span(0, top))
    # A linear rescale maps the stored range along with the values, so it cancels: mapping the stored values
    # is exact (a negative slope reverses the range).
    lo, hi = stored_range(ds)
    if float(ds.get("RescaleSlope", 1) or 1) < 0:
        lo, hi = hi, lo
    return unit_range(stored, *span(lo, hi))


def _integer(ds, keyword: str, default: int | None = None) -> int:
    """An integer attribute (US, or IS such as NumberOfFrames) or ImageError naming it and its value."""
    if keyword not in ds:
        if default is None:
            raise ImageError(f"DICOM file has no {keyword} (PS3.3 C.7.6.3)")
        return default
    raw = ds[keyword].value
    if raw is None or raw == "":
        if default is None:
            raise ImageError(f"DICOM {keyword} is empty (PS3.3 C.7.6.3)")
        return default
    try:
        return int(str(raw).strip()) if isinstance(raw, (str, bytes)) else int(raw)
    except (TypeError, ValueError):
        raise ImageError(f"DICOM {keyword} is {str(raw)[:40]!r}, not an integer (PS3.5 6.2): the file is "
                         "malformed; re-export it from the modality") from None


class DicomImage:
    """One DICOM object's pixel attributes, checked; :meth:`stored_frames` decodes its frames one by one and
    :meth:`to_gray` maps one (or a crop of it) to grey."""

    def __init__(self, path: Path, ds, max_frames: int = MAX_FRAMES):
        self.path, self.ds = path, ds
        if "PixelData" not in ds:
            raise ImageError("DICOM file has no pixel data" + (" (it holds float pixel data, which this reader does "
                             "not take)" if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds else ""))
        self.rows, self.cols = _integer(ds, "Rows"), _integer(ds, "Columns")
        self.samples = _integer(ds, "SamplesPerPixel", 1)
        # PS3.3 C.7.6.6: Number of Frames is 1 or more; pydicom reads an empty or zero value as one frame, as here
        self.number_of_frames = max(1, _integer(ds, "NumberOfFrames", 1))
        self.multiframe = "NumberOfFrames" in ds  # a multi-frame IOD numbers its frames, even a loop of one
        self.photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
        if self.rows < 1 or self.cols < 1:
            raise ImageError(f"DICOM image is {self.cols}x{self.rows} pixels")
        if self.rows * self.cols > MAX_PIXELS:
            raise ImageError(f"DICOM image is {self.cols}x{self.rows}, above the {MAX_PIXELS:,}-pixel cap")
        if self.number_of_frames > max_frames:
            raise TooManyFrames(f"DICOM object has {self.number_of_frames:,} frames, above the cap of {max_frames:,} "
                                "per object: raise it with --max-frames, or export a shorter loop")
        self._check_photometric()
        self._check_length()

    def _check_length(self) -> None:
        """Native (uncompressed) Pixel Data must hold every frame it declares (PS3.5 8.1.1): a truncated object or a
        wrong NumberOfFrames said as such, not as a decoder's reshape error at the missing frame."""
        meta = getattr(self.ds, "file_meta", None)
        syntax = getattr(meta, "TransferSyntaxUID", None)
        element = self.ds.get_item("PixelData", keep_deferred=True)  # its length, without reading a long loop
        if syntax is None or syntax.is_encapsulated or element is None:
            return
        held = getattr(element, "length", None)
        held = len(element.value) if held is None and element.value is not None else held
        bits = _integer(self.ds, "BitsAllocated", 8)
        per_pixel = (2 if self.photometric == "YBR_FULL_422" else self.samples) * bits  # 4:2:2 packs a pair in 4
        frame_bytes = -(-self.rows * self.cols * per_pixel // 8)
        if held is not None and held < frame_bytes * self.number_of_frames:
            whole = held // frame_bytes if frame_bytes else 0
            raise ImageError(f"DICOM Pixel Data holds {held:,} bytes, {whole} whole frame(s) of {self.cols}x{self.rows}, "
                             f"where NumberOfFrames says {self.number_of_frames}: the object is truncated or "
                             "NumberOfFrames is wrong")

    def _check_photometric(self) -> None:
        pi, n = self.photometric, self.samples
        if pi not in PHOTOMETRICS:
            raise ImageError(f"DICOM photometric interpretation {pi or '(none)'!r} is not one this reader decodes "
                             f"({', '.join(PHOTOMETRICS)})")
        if (n == 3) != (pi in COLOUR_FORMS):
            raise ImageError(f"DICOM {pi} with {n} samples per pixel is inconsistent (PS3.3 C.7.6.3.1.1-2)")
        if pi not in MONOCHROME and _integer(self.ds, "PixelRepresentation", 0):
            raise ImageError(f"DICOM {pi} with signed samples (PixelRepresentation 1) is not valid (PS3.3 C.7.6.3.1)")
        planar = _integer(self.ds, "PlanarConfiguration", 0) if n == 3 else 0
        if planar not in (0, 1):
            raise ImageError(f"DICOM PlanarConfiguration is {planar}; PS3.3 C.7.6.3.1.3 allows 0 or 1")

    def stored_frames(self) -> Iterator[np.ndarray]:
        """Each frame in order as pydicom decodes it (RGB for the YBR forms, palette indices), one at a time; the
        grey conversion is per pixel, so a crop of it converted (:meth:`to_gray`) is the crop of the converted
        frame."""
        from pydicom.pixels import iter_pixels

        frames = iter_pixels(str(self.path))
        count = 0
        while True:
            try:
                stored = next(frames)
            except StopIteration:
                break
            except MemoryError:
                raise
            except Exception as e:  # noqa: BLE001 — pydicom and its decoders raise many types for bad pixel data
                raise ImageError(f"DICOM pixel data cannot be decoded (frame {count + 1} of {self.number_of_frames}: "
                                 f"{type(e).__name__}: {e})") from None
            count += 1
            yield stored
        if count < self.number_of_frames:
            raise ImageError(f"DICOM pixel data holds {count} frame(s), NumberOfFrames says {self.number_of_frames}")

    def to_gray(self, stored: np.ndarray, colour: str = COLOUR) -> np.ndarray:
        """One decoded frame (as pydicom returns it) to float32 (rows, columns) in [0, 1]."""
        try:
            if self.photometric in MONOCHROME:
                return to_unit(stored, self.ds, invert=self.photometric == "MONOCHROME1")
            if self.photometric == PALETTE:
                return self._palette(stored, colour)
            return luma(stored, stored_range(self.ds)[1], colour)
        except ImageError:
            raise
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
            raise ImageError(f"DICOM intensity attributes are not usable ({type(e).__name__}: {e})") from None

    def _palette(self, indices: np.ndarray, colour: str) -> np.ndarray:
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(indices, self.ds)[..., :3]  # an alpha LUT (rare) is not read
        bits = int(self.ds.RedPaletteColorLookupTableDescriptor[2])
        top = 2 ** (16 if bits > 8 else 8) - 1
        if rgb.size and int(rgb.max()) > top:
            raise ImageError(f"DICOM palette LUT entries exceed their {bits}-bit descriptor (PS3.3 C.7.6.3.1.5)")
        return luma(rgb, top, colour)


def open_dicom(path: str | Path, max_frames: int = MAX_FRAMES) -> DicomImage:
    """Read and check a DICOM file's attributes (its pixel data stays on disk until
    :meth:`DicomImage.stored_frames`)."""
    try:
        import pydicom
    except ImportError:
        raise ImageError("reading DICOM needs pydicom: pip install 'dcube-edge[dicom]'") from None
    try:
        ds = pydicom.dcmread(str(path), defer_size="64 KB")
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 — pydicom raises many types for malformed files
        raise ImageError(f"not a readable DICOM file ({type(e).__name__}: {e})") from None
    try:
        return DicomImage(Path(path), ds, max_frames)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 — an attribute pydicom cannot convert
        raise ImageError(f"DICOM attributes are not usable ({type(e).__name__}: {e})") from None


def write_secondary_capture(pixels: np.ndarray, path: str | Path, study_uid: str | None = None,
                            patient_id: str = "PHANTOM", modality: str = "OT") -> Path:
    """An 8-bit MONOCHROME2 Secondary Capture Image (PS3.3 A.8.1; conversion type SYN, a synthetic image) with
    every module's type-1 and type-2 attributes, for demo scans and load tests: what a sender would C-STORE.
    Study/series/instance UIDs are generated (the study's when given)."""
    import datetime as dt

    try:
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    except ImportError:
        raise ImageError("writing DICOM needs pydicom: pip install 'dcube-edge[dicom]'") from None
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    now = dt.datetime.now()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Demo", patient_id, "", ""
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid or generate_uid(), now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), modality, 1, 1
    ds.ConversionType, ds.PatientOrientation, ds.Laterality = "SYN", "", ""
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)
