"""Calibration sets (calibration/sets.py): a stratified, seeded sample of the training split, preprocessed like
inference, stored as an .npz without pickles."""
import numpy as np
import pytest

from dcube_edge.calibration import sets
from dcube_edge.errors import UserError
from dcube_edge.runtimes.preprocess import PreprocessSpec


def test_stratified_calibration_indices():
    labels = np.array([0] * 80 + [1] * 20)
    idx = sets.stratified_indices(labels, 10, seed=3)
    assert len(idx) == 10
    assert np.bincount(labels[idx]).tolist() == [8, 2]
    assert (idx == sets.stratified_indices(labels, 10, seed=3)).all()
    assert not (idx == sets.stratified_indices(labels, 10, seed=4)).all()
    rare = np.array([0] * 99 + [1])
    assert 1 in rare[sets.stratified_indices(rare, 5, 0)]  # every class at least once


def test_calibration_file_roundtrip(demo_data, tmp_path):
    from dcube_edge.data import discover

    train = discover(demo_data).train
    path = sets.build(train.paths, train.labels, PreprocessSpec(32), 12, 0, tmp_path / "c.npz")
    images, labels = sets.read(path, PreprocessSpec(32))
    assert images.shape == (12, 1, 32, 32)
    assert np.bincount(labels).tolist() == [4, 4, 4]
    assert -1 <= images.min()
    assert images.max() <= 1
    with pytest.raises(UserError, match="rebuild it"):
        sets.read(path, PreprocessSpec(64))
    d = sets.describe(path)
    assert len(d["sha256"]) == 64
    assert d["size"] == 12
