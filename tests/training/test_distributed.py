"""Two CPU processes under torchrun (gloo) train step 1 like one process does."""
import json
import subprocess
import sys

import numpy as np
import pytest
from commands import cli
from safetensors.torch import load_file

ARGS = ["--preset", "tiny", "--epochs-diffusion", "2", "--epochs-classifier", "1", "--batch-size", "16", "--seed", "3"]


def test_two_process_ddp_matches_single_process(demo_data, tmp_path):
    cli("train", demo_data, "--out", tmp_path / "single", *ARGS, check=0)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "dcube_edge.cli", "train", str(demo_data), "--out", str(tmp_path / "ddp"), *ARGS],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("run written to") == 1  # rank 0 reports, rank 1 stays quiet
    a, b = load_file(str(tmp_path / "single" / "diffusion.safetensors")), load_file(str(tmp_path / "ddp" / "diffusion.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-5, err_msg=k)
    ms, md = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("single", "ddp"))
    assert md["world_size_step1"] == 2 and ms["world_size_step1"] == 1
    assert ms["validation"]["confusion_matrix"] == md["validation"]["confusion_matrix"]
    assert ms["history"]["diffusion"][-1]["eps"] == pytest.approx(md["history"]["diffusion"][-1]["eps"], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())
