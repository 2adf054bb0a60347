"""DICOM input via pydicom (extra ``dicom``): modality LUT (rescale slope/intercept), VOI LUT or
window centre/width when present, MONOCHROME1 inverted, single frame only."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import MAX_PIXELS, ImageError


def read_dicom(path: str | Path) -> np.ndarray:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise ImageError("reading DICOM needs pydicom: pip install 'dcube-edge[dicom]'") from None
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:  # pydicom raises several types for malformed files
        raise ImageError(f"not a readable DICOM file ({type(e).__name__}: {e})") from None
    if "PixelData" not in ds:
        raise ImageError("DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > MAX_PIXELS:
        raise ImageError(f"DICOM image is {cols}x{rows}, above the {MAX_PIXELS:,}-pixel cap")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageError(f"multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported: export single frames")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ImageError("colour DICOM is not supported: the models read grayscale")
    try:
        arr = ds.pixel_array.astype(np.float64)
    except Exception as e:
        raise ImageError(f"DICOM pixel data cannot be decoded ({type(e).__name__}: {e})") from None
    arr = apply_modality_lut(arr, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        arr = apply_voi_lut(arr, ds, prefer_lut=True)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        arr = 1.0 - arr
    return arr.astype(np.float32)


def write_secondary_capture(pixels: np.ndarray, path: str | Path, study_uid: str | None = None,
                            patient_id: str = "PHANTOM") -> Path:
    """An 8-bit MONOCHROME2 secondary-capture instance (for demo scans and load tests): what a sender would
    C-STORE. Study/series/instance UIDs are generated (the study's when given)."""
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
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "OT", patient_id, "Phantom^Demo"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)
