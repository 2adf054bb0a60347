import numpy as np
import pytest

from dcube_edge.data import DataError, discover, same_classes, stratified_split
from dcube_edge.phantoms import CLASSES, write_demo
from dcube_edge.runtimes.preprocess import PreprocessSpec
from tests.conftest import shared


def test_flat_layout_gets_stratified_val(tmp_path):
    write_demo(tmp_path, per_class=10, size=16)
    ds = discover(tmp_path, val_fraction=0.2, seed=0)
    assert ds.classes == sorted(CLASSES)
    assert ds.val.counts(3) == [2, 2, 2] and ds.train.counts(3) == [8, 8, 8]
    assert not set(ds.train.paths) & set(ds.val.paths)
    again = discover(tmp_path, val_fraction=0.2, seed=0)
    assert again.val.paths == ds.val.paths  # deterministic
    assert "stratified" in ds.val_source


def test_split_layout_uses_val_folder(tmp_path):
    write_demo(tmp_path, per_class=5, size=16, val_per_class=3)
    ds = discover(tmp_path)
    assert ds.val_source == "val/" and len(ds.val) == 9 and len(ds.train) == 15


def test_one_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    write_demo(tmp_path / "x", per_class=2, size=8)
    (tmp_path / "x" / "benign").rename(tmp_path / "only" / "benign")
    with pytest.raises(DataError, match="only one class"):
        discover(tmp_path / "only")


def test_train_val_class_mismatch(tmp_path):
    write_demo(tmp_path, per_class=3, size=8, val_per_class=2)
    for f in (tmp_path / "val" / "normal").iterdir():
        f.unlink()
    (tmp_path / "val" / "normal").rmdir()
    with pytest.raises(DataError, match="differ"):
        discover(tmp_path)


def test_empty_class_folder(tmp_path):
    write_demo(tmp_path, per_class=3, size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        discover(tmp_path)


def test_stratified_split_keeps_every_class(tmp_path):
    write_demo(tmp_path, per_class=4, size=8)
    ds = discover(tmp_path, 0.15)
    tr, va = stratified_split(ds.train, 0.5, 1)
    assert set(va.labels.tolist()) == {0, 1, 2}


def test_breastmnist_layout():
    ds = discover(shared("breastmnist"))
    assert ds.classes == ["malignant", "normal_benign"]
    assert ds.train.counts(2) == [147, 399] and ds.val.counts(2) == [21, 57]
    x = ds.val.load(PreprocessSpec(32))
    assert x.shape == (78, 1, 32, 32) and -1 <= x.min() < x.max() <= 1
    assert np.isfinite(x).all()


def test_audit_warns_about_leaks_sizes_and_imbalance(tmp_path):
    import shutil

    from dcube_edge.data import audit

    write_demo(tmp_path, per_class=12, size=16, val_per_class=3)
    shutil.copy(tmp_path / "train" / "benign" / "benign_0000.png", tmp_path / "val" / "benign" / "leak.png")
    write_demo(tmp_path / "big", per_class=1, size=24)
    shutil.copy(tmp_path / "big" / "normal" / "normal_0000.png", tmp_path / "train" / "normal" / "big.png")
    for f in sorted((tmp_path / "train" / "malignant").iterdir())[2:]:
        f.unlink()
    warnings = " | ".join(audit(discover(tmp_path)))
    assert "1 validation image(s) are byte-identical" in warnings and "leak.png" in warnings
    assert "2 sizes (16x16: 36, 24x24: 1)" in warnings  # 27 train + 10 val, one of them 24 px
    assert "imbalanced" in warnings
    write_demo(tmp_path / "clean", per_class=5, size=16, val_per_class=2)
    assert audit(discover(tmp_path / "clean")) == []


def test_a_resumed_run_is_refused_data_with_other_classes():
    same_classes((), ["benign", "malignant"], "new")  # a fresh run records no classes yet
    same_classes(("benign", "malignant"), ["benign", "malignant"], "same")
    with pytest.raises(DataError, match="other has classes benign, normal, but the run being resumed was trained on benign, malignant"):
        same_classes(("benign", "malignant"), ["benign", "normal"], "other")


def test_a_sites_dicom_export_is_read_as_classify_reads_it(tmp_path):
    """Cine loops and dual views in class folders: one sample per frame and tissue region, with the folder's label;
    the views of one object never straddle train and validation; Split.load gives classify's arrays."""
    pytest.importorskip("pydicom", reason="DICOM needs the `dicom` extra (pydicom)")
    from dcube_edge.runtimes.preprocess import load_views

    write_demo(tmp_path / "loops", per_class=4, size=24, dicom=True, screen="rgb", frames=3)
    write_demo(tmp_path / "dual", per_class=1, size=24, seed=1, dicom=True, screen="rgb", views=2)
    for kind in CLASSES:
        (tmp_path / "dual" / kind / f"{kind}_0000.dcm").rename(tmp_path / "loops" / kind / "dual.dcm")
    ds = discover(tmp_path / "loops", val_fraction=0.25, seed=0)
    assert len(ds.train) + len(ds.val) == 3 * (4 * 3 + 2)
    assert not set(ds.train.paths) & set(ds.val.paths)  # an object's frames all go one way
    paths, labels = ds.val.instances()
    assert len(paths) == len(set(paths)) == 3 and sorted(labels.tolist()) == [0, 1, 2]
    first = ds.train.paths[0]
    assert [(v.frame, v.region) for v in ds.train.views[:3]] in ([(1, 1), (2, 1), (3, 1)], [(None, 1), (None, 2)])
    spec = PreprocessSpec(16)
    x = ds.train.load(spec)
    assert x.shape == (len(ds.train), 1, 16, 16)
    expect = np.stack([a for _, a in load_views(first, spec)])
    assert np.array_equal(x[:len(expect)], expect)


def test_a_bad_file_in_a_training_folder_is_named_when_loaded(tmp_path):
    write_demo(tmp_path, per_class=3, size=8)
    (tmp_path / "benign" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    ds = discover(tmp_path, 0.0)
    with pytest.raises(DataError, match="broken.dcm"):
        ds.train.load(PreprocessSpec(8))
