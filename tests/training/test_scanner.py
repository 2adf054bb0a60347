"""Demo objects like a scanner's (dcube_edge/scanner.py, `demo-data --dicom --screen`): valid US Image and US
Multi-frame Image objects (dciodvfy), colour screens whose tissue region holds the phantom."""
from __future__ import annotations

import numpy as np
import pytest
from commands import cli
from PIL import Image

from dcube_edge.phantoms import CLASSES, write_demo

pydicom = pytest.importorskip("pydicom", reason="DICOM needs the `dicom` extra (pydicom)")

from dicom_forms import dciodvfy  # noqa: E402


@pytest.mark.parametrize("screen,frames,views", [("rgb", 1, 1), ("jpeg", 5, 1), ("rgb", 3, 2)])
def test_scanner_objects_are_valid_and_hold_the_phantom_in_their_tissue_regions(tmp_path, screen, frames, views):
    from dcube_edge.runtimes.preprocess import source

    write_demo(tmp_path / "png", per_class=1, size=48, seed=3)
    write_demo(tmp_path / "us", per_class=1, size=48, seed=3, dicom=True, screen=screen, frames=frames, views=views)
    for kind in CLASSES:
        path = tmp_path / "us" / kind / f"{kind}_0000.dcm"
        ds = pydicom.dcmread(path)
        assert ds.Modality == "US" and ds.PhotometricInterpretation == ("RGB" if screen == "rgb" else "YBR_FULL_422")
        assert str(ds.SOPClassUID).endswith("6.1" if frames == 1 else "3.1")
        assert (ds.Rows, ds.Columns) == (480, 640) and int(ds.get("NumberOfFrames", 1)) == frames
        errors, warnings = dciodvfy(path)
        assert errors == [] and warnings == [], errors + warnings
        src = source(path)
        views_read = list(src.read())
        assert len(views_read) == frames * views and src.regions.source == "ultrasound tissue regions"
        assert all(g.shape == (48, 48) for _, g in views_read)
        if screen == "rgb" and frames == 1 and views == 1:  # a still's tissue is the PNG phantom, exactly
            png = np.asarray(Image.open(tmp_path / "png" / kind / f"{kind}_0000.png"), dtype=np.float32) / 255
            assert np.array_equal(views_read[0][1], png)


def test_demo_data_refuses_screen_options_that_do_not_fit(tmp_path):
    res = cli("demo-data", tmp_path / "x", "--screen", "rgb", check=2)
    assert "screens are DICOM objects: add --dicom" in res.stderr
    res = cli("demo-data", tmp_path / "x", "--dicom", "--screen", "palette", check=2)
    assert "the demo writes rgb or jpeg screens" in res.stderr
    res = cli("demo-data", tmp_path / "x", "--dicom", "--screen", "rgb", "--views", "2", "--size", "400", check=2)
    assert "do not fit" in res.stderr and "Traceback" not in res.stderr
