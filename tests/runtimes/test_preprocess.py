import numpy as np
import pytest
from PIL import Image

from dcube_edge.runtimes.preprocess import ImageError, PreprocessSpec, load, preprocess, read_image

SPEC = PreprocessSpec(32)


def test_8bit_png_scales_to_minus_one_one(tmp_path):
    arr = np.zeros((32, 32), np.uint8)
    arr[:, 16:] = 255
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load(tmp_path / "a.png", SPEC)
    assert x.shape == (1, 32, 32) and x.dtype == np.float32
    assert x[0, 0, 0] == -1.0 and x[0, 0, -1] == 1.0


def test_16bit_png_keeps_depth(tmp_path):
    arr = np.full((8, 8), 32768, np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    g = read_image(tmp_path / "a.png")
    assert g.max() == pytest.approx(32768 / 65535, abs=1e-4)


def test_rgb_and_rgba_become_gray(tmp_path):
    Image.new("RGB", (10, 12), (255, 255, 255)).save(tmp_path / "rgb.png")
    Image.new("RGBA", (10, 12), (255, 255, 255, 0)).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgb.png").shape == (12, 10)
    assert read_image(tmp_path / "rgb.png").min() == 1.0
    assert read_image(tmp_path / "rgba.png").max() == 0.0  # fully transparent on black


def test_resize_to_spec(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 70), dtype=np.uint8)).save(tmp_path / "a.jpg")
    assert load(tmp_path / "a.jpg", SPEC).shape == (1, 32, 32)


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not an image", "not a readable image")])
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(tmp_path / "bad.png")


def test_preprocess_rejects_non_2d():
    with pytest.raises(ImageError, match="2-D"):
        preprocess(np.zeros((2, 2, 2), np.float32), SPEC)


def test_spec_roundtrip():
    assert PreprocessSpec.from_dict(SPEC.to_dict()) == SPEC
