"""A baseline run interrupted between epochs resumes from its checkpoint to the weights of an uninterrupted run."""
import json
import shutil

import numpy as np
import pytest
from commands import cli
from safetensors.torch import load_file

from dcube_edge.baseline import STATE, train_baseline
from dcube_edge.config import Config


def _cfg() -> Config:  # what `dcube-edge baseline --preset tiny --epochs 3 --seed 5` asks for
    return Config.from_preset("tiny", model="resnet18", steps_classifier=None, epochs_classifier=3, seed=5,
                              class_weights=Config.class_weights)


def test_interrupted_baseline_resumes_to_the_uninterrupted_weights(demo_data, tmp_path):
    whole = tmp_path / "whole"
    train_baseline(demo_data, whole, _cfg(), log=lambda *_: None)

    def stop_in_epoch_2(phase, done, total, scalars):
        if scalars["epoch"] == 2:
            raise KeyboardInterrupt

    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_baseline(demo_data, run, _cfg(), report=stop_in_epoch_2, log=lambda *_: None)
    assert (run / "config.json").is_file() and (run / STATE).is_file()
    assert not (run / "metrics.json").exists() and not (run / "baseline.safetensors").exists()
    res = cli("export", run, "--out", tmp_path / "x", check=2)  # an unfinished run says how to finish it
    assert "training did not finish" in res.stderr and "--resume" in res.stderr

    res = cli("baseline", demo_data, "--out", run, "--preset", "tiny", "--epochs", "3", "--seed", "5", check=2)
    assert "--resume" in res.stderr  # never restarts over a run silently
    res = cli("baseline", demo_data, "--out", run, "--preset", "tiny", "--epochs", "3", "--seed", "6", "--resume",
              check=2)
    assert "--seed 6 (saved 5)" in res.stderr and "Traceback" not in res.stderr
    other = tmp_path / "other"  # the same images with one class fewer: not the data the run was started on
    shutil.copytree(demo_data, other)
    for split in ("train", "val"):
        shutil.rmtree(other / split / "normal")
    res = cli("baseline", other, "--out", run, "--preset", "tiny", "--epochs", "3", "--seed", "5", "--resume", check=2)
    assert "the run being resumed was trained on benign, malignant, normal" in res.stderr
    assert "Traceback" not in res.stderr and (run / STATE).is_file()

    cli("baseline", demo_data, "--out", run, "--preset", "tiny", "--epochs", "3", "--seed", "5", "--resume", check=0)
    a, b = load_file(str(whole / "baseline.safetensors")), load_file(str(run / "baseline.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-6, err_msg=k)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (whole, run))
    assert len(mb["history"]["baseline"]) == 3 and mb["best_epoch"] == ma["best_epoch"]
    assert [h["loss"] for h in mb["history"]["baseline"]] == pytest.approx([h["loss"] for h in ma["history"]["baseline"]])
    assert mb["validation"]["confusion_matrix"] == ma["validation"]["confusion_matrix"]
    assert mb["validation"]["auc"] == pytest.approx(ma["validation"]["auc"])

    res = cli("baseline", demo_data, "--out", run, "--resume", "--preset", "tiny", check=0)
    assert "already finished" in res.stdout
