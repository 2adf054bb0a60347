"""The Sequence of Ultrasound Regions (PS3.3 C.8.5.5): which boxes are tissue, clipping, boxes that make no sense."""
from __future__ import annotations

import numpy as np
import pytest

from dcube_edge.runtimes.regions import MIN_SIDE, TISSUE, WHOLE_FRAME, Box, tissue_regions

pydicom = pytest.importorskip("pydicom", reason="regions are read from pydicom datasets (the `dicom` extra)")


def item(box, spatial=1, data_type=1):
    from pydicom.dataset import Dataset

    d = Dataset()
    d.RegionSpatialFormat, d.RegionDataType, d.RegionFlags = spatial, data_type, 0
    if box is not None:
        d.RegionLocationMinX0, d.RegionLocationMinY0, d.RegionLocationMaxX1, d.RegionLocationMaxY1 = box
    return d


def regions_of(*items, rows=480, cols=640, policy=TISSUE):
    from pydicom.dataset import Dataset

    ds = Dataset()
    if items:
        ds.SequenceOfUltrasoundRegions = list(items)
    return tissue_regions(ds, rows, cols, policy)


def test_tissue_regions_are_2d_tissue_only_in_sequence_order():
    found = regions_of(item((10, 20, 300, 400), spatial=3, data_type=3),  # a PW Doppler strip
                       item((320, 40, 600, 420)), item((16, 40, 27, 159), spatial=5, data_type=0x0E),  # colour bar
                       item((20, 40, 300, 420)), item((100, 100, 200, 200), data_type=2))  # a colour-flow box
    assert [(n, b.to_list()) for n, b in found.boxes] == [(2, [320, 40, 600, 420]), (4, [20, 40, 300, 420])]
    assert found.source == "ultrasound tissue regions" and found.notes == ()


def test_boxes_past_the_image_are_clipped_and_nonsense_falls_back_to_the_whole_frame():
    clipped = regions_of(item((100, 50, 640, 480)))  # ends one past the last column and row
    assert clipped.boxes[0][1] == Box(100, 50, 639, 479) and clipped.notes == ()
    resized = regions_of(item((40, 30, 1000, 700)), rows=240, cols=320)  # bounds of the screen before a resize
    assert resized.boxes[0][1] == Box(40, 30, 319, 239)
    for bad, why in [((300, 40, 100, 400), "ends before it starts"), ((700, 40, 800, 400), "outside"),
                     ((10, 10, 10 + MIN_SIDE - 2, 200), "under"), (None, "no usable Region Location")]:
        found = regions_of(item(bad))
        assert found.boxes == () and found.source == "whole frame", bad
        assert why in found.notes[0] and "read the whole frame" in found.notes[-1], found.notes
    one_good = regions_of(item((300, 40, 100, 400)), item((20, 40, 300, 420)))
    assert [n for n, _ in one_good.boxes] == [2] and "region 1" in one_good.notes[0]


def test_no_sequence_or_no_tissue_region_reads_the_whole_frame_and_says_why():
    assert regions_of().boxes == () and regions_of().notes == ()  # no regions: the whole frame, nothing to note
    doppler_only = regions_of(item((0, 0, 100, 100), spatial=3, data_type=3))
    assert doppler_only.boxes == () and "no usable 2D tissue region among the object's 1" in doppler_only.notes[0]
    assert regions_of(item((20, 40, 300, 420)), policy=WHOLE_FRAME).boxes == ()  # the policy of older engines


def test_a_repeated_region_is_read_once_and_crop_takes_inclusive_bounds():
    found = regions_of(item((20, 40, 300, 420)), item((20, 40, 300, 420)))
    assert len(found.boxes) == 1
    frame = np.arange(480 * 640).reshape(480, 640)
    assert Box(2, 3, 5, 9).crop(frame).shape == (7, 4) and Box(2, 3, 5, 9).crop(frame)[0, 0] == 3 * 640 + 2
