"""DICOM input via pydicom (extra ``dicom``), by the intensity contract of :mod:`.images`: the stored range
(BitsStored, PixelRepresentation) maps to [0, 1]; where the file carries a VOI transform its output range is
used instead (PS3.3 C.11.2); MONOCHROME1 is inverted (PS3.3 C.7.6.3.1.2). Single-frame grayscale only."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import MAX_PIXELS, ImageError, unit_range


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
    """Stored sample values of ``ds`` to float32 [0, 1] (see the module docstring); ``invert`` (MONOCHROME1)
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


def read_dicom(path: str | Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise ImageError("reading DICOM needs pydicom: pip install 'dcube-edge[dicom]'") from None
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:  # pydicom raises several types for malformed files
        raise ImageError(f"not a readable DICOM file ({type(e).__name__}: {e})") from None
    return dataset_to_unit(ds)


def dataset_to_unit(ds) -> np.ndarray:
    """A decoded DICOM dataset's single grayscale frame as float32 (H, W) in [0, 1]."""
    if "PixelData" not in ds:
        raise ImageError("DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > MAX_PIXELS:
        raise ImageError(f"DICOM image is {cols}x{rows}, above the {MAX_PIXELS:,}-pixel cap")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageError(f"multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported: export single frames")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ImageError("colour DICOM is not supported: the models read grayscale")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(f"DICOM photometric interpretation {photometric} is not grayscale")
    try:
        stored = ds.pixel_array
    except Exception as e:
        raise ImageError(f"DICOM pixel data cannot be decoded ({type(e).__name__}: {e})") from None
    try:
        return to_unit(stored, ds, invert=photometric == "MONOCHROME1")
    except ImageError:
        raise
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ImageError(f"DICOM intensity attributes are not usable ({type(e).__name__}: {e})") from None


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
