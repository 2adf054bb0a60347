"""The reader (runtimes/reader.py, dicom.py): frames decoded one at a time, the cap, and one bad object being that
object's error — malformed attributes, undecodable pixel data — in one line, the libraries' warnings kept with it."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcube_edge.runtimes.images import ImageError
from dcube_edge.runtimes.preprocess import PreprocessSpec, load, load_views, read_image, source

pydicom = pytest.importorskip("pydicom", reason="DICOM needs the `dicom` extra (pydicom)")

from dicom_forms import jpeg_baseline, write_image  # noqa: E402

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def loop_pixels(frames: int, size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3)).astype(np.uint8)


def malformed(path: Path, keyword_tag: bytes, vr: bytes, good: bytes, bad: bytes) -> Path:
    """The file with one element's value bytes replaced, as a broken writer leaves it (explicit VR little endian)."""
    head = keyword_tag + vr + len(good).to_bytes(2, "little")
    data = path.read_bytes()
    assert data.count(head + good) == 1
    path.write_bytes(data.replace(head + good, keyword_tag + vr + len(bad).to_bytes(2, "little") + bad))
    return path


def test_every_frame_is_a_view_and_the_first_frame_is_the_same_frame_sent_alone(tmp_path):
    pixels = loop_pixels(5)
    loop = write_image(tmp_path / "loop.dcm", pixels, "RGB", frames=True, sop_class=US_MULTIFRAME)
    src = source(loop)
    assert src.number_of_frames == 5 and [v.frame for v in src.views()] == [1, 2, 3, 4, 5]
    read = list(src.read())
    assert [v.frame for v, _ in read] == [1, 2, 3, 4, 5]
    for t in range(5):
        alone = write_image(tmp_path / f"f{t}.dcm", pixels[t], "RGB")
        assert np.array_equal(read[t][1], read_image(alone))
    spec = PreprocessSpec(16)
    assert np.array_equal(next(load_views(loop, spec))[1], load(tmp_path / "f0.dcm", spec))
    with pytest.raises(ImageError, match="holds 5 views"):
        read_image(loop)  # a single picture is asked for: say what the file is, not the first frame silently
    jpeg = write_image(tmp_path / "loop.jpg.dcm", pixels, "YBR_FULL_422", frames=True, sop_class=US_MULTIFRAME,
                       syntax="1.2.840.10008.1.2.4.50", fragments=[jpeg_baseline(f) for f in pixels])
    assert [v.frame for v, _ in source(jpeg).read()] == [1, 2, 3, 4, 5]


def test_a_thousand_frame_loop_is_read_frame_by_frame_not_held(tmp_path):
    pixels = loop_pixels(1000, size=48)
    path = write_image(tmp_path / "long.dcm", pixels, "RGB", frames=True, sop_class=US_MULTIFRAME)
    del pixels
    total = 1000 * 48 * 48 * 3
    tracemalloc.start()
    try:
        count = sum(1 for _ in source(path).read())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 1000
    assert peak < total / 10, f"peak {peak:,} bytes while reading {total:,} bytes of frames"


def test_frames_above_the_cap_are_refused_in_one_line(tmp_path):
    path = write_image(tmp_path / "loop.dcm", loop_pixels(12), "RGB", frames=True, sop_class=US_MULTIFRAME)
    with pytest.raises(ImageError, match=r"has 12 frames, above the cap of 10 per object: raise it with --max-frames"):
        source(path, max_frames=10)


def test_malformed_attributes_are_that_files_one_line_error_with_pydicoms_warning(tmp_path, capfd):
    """NumberOfFrames "1A" (from a real file): refused naming the attribute and value; pydicom's warning about the
    value is in the same line, and nothing is printed."""
    path = write_image(tmp_path / "bad.dcm", loop_pixels(1)[0], "RGB", NumberOfFrames=11)
    malformed(path, b"\x28\x00\x08\x00", b"IS", b"11", b"1A")
    with pytest.raises(ImageError) as e:
        source(path)
    message = str(e.value)
    assert "NumberOfFrames is '1A', not an integer" in message and "\n" not in message
    assert "Invalid value for VR IS" in message  # what pydicom said, kept with the error
    rows = write_image(tmp_path / "rows.dcm", loop_pixels(1)[0], "RGB")
    malformed(rows, b"\x28\x00\x10\x00", b"US", (24).to_bytes(2, "little"), b"\x18")  # a 1-byte US value
    with pytest.raises(ImageError, match="DICOM"):
        list(source(rows).read())
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured


def test_undecodable_and_short_pixel_data_fail_in_one_line(tmp_path):
    frames = loop_pixels(3)
    broken = write_image(tmp_path / "broken.dcm", frames, "YBR_FULL_422", frames=True, sop_class=US_MULTIFRAME,
                         syntax="1.2.840.10008.1.2.4.50",
                         fragments=[jpeg_baseline(frames[0]), b"\xff\xd8\xff\xe0garbage" * 20, jpeg_baseline(frames[2])])
    src = source(broken)
    got = []
    with pytest.raises(ImageError) as e:
        for view, _ in src.read():
            got.append(view.frame)
    assert got == [1] and "frame 2 of 3" in str(e.value) and "\n" not in str(e.value)
    short = write_image(tmp_path / "short.dcm", frames, "RGB", frames=True, sop_class=US_MULTIFRAME)
    data = short.read_bytes()
    short.write_bytes(data[:-24 * 24 * 3 - 100])  # the last frame and a bit cut off
    with pytest.raises(ImageError, match="DICOM"):
        list(source(short).read())


def test_frames_the_pixel_data_does_not_hold_are_said_as_such(tmp_path):
    """NumberOfFrames 4 over three frames of native pixel data failed as "cannot reshape array of size 0 into
    shape ..." at the fourth frame: now one line saying what the object declares and what it holds, before any
    frame is read."""
    frames = loop_pixels(3)
    for photometric, pixels in (("RGB", frames), ("MONOCHROME2", frames[..., 0])):
        path = write_image(tmp_path / f"{photometric}.dcm", pixels, photometric, frames=True, sop_class=US_MULTIFRAME)
        ds = pydicom.dcmread(path)
        ds.NumberOfFrames = 4
        ds.save_as(path, enforce_file_format=True)
        with pytest.raises(ImageError) as e:
            list(source(path).read())
        said = str(e.value)
        assert "3 whole frame(s)" in said and "NumberOfFrames says 4" in said and "reshape" not in said, said
    assert len(list(source(write_image(tmp_path / "ok.dcm", frames, "RGB", frames=True)).read())) == 3


def test_a_readable_file_keeps_the_warnings_it_caused(tmp_path, capfd):
    """A JPEG baseline object that says RGB while its codestream is JFIF (YCbCr): pydicom warns and decodes it as
    YBR; the warning is the file's, not printed."""
    rgb = loop_pixels(1)[0]
    path = write_image(tmp_path / "jfif.dcm", rgb, "RGB", syntax="1.2.840.10008.1.2.4.50", fragments=[jpeg_baseline(rgb)])
    src = source(path)
    list(src.read())
    assert any("JFIF" in w for w in src.warnings), src.warnings
    assert capfd.readouterr().err == ""


def test_colour_photometrics_with_the_wrong_samples_are_refused(tmp_path):
    path = write_image(tmp_path / "odd.dcm", loop_pixels(1)[0][..., 0], "RGB")  # one sample called RGB
    with pytest.raises(ImageError, match="RGB with 1 samples per pixel is inconsistent"):
        source(path)
    Image.fromarray(loop_pixels(1)[0]).save(tmp_path / "ok.png")
    assert source(tmp_path / "ok.png").views()[0].frame is None
