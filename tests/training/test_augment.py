import json

import pytest
import torch
from commands import cli
from PIL import Image

from dcube_edge.config import Config
from dcube_edge.diffusion import Schedule, sample_ddim, sample_ddpm


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samplers_recover_a_point_distribution_with_the_exact_eps(sampler):
    """If every training image were c, the optimal ε(x, t) is (x − √ᾱ·c)/√(1−ᾱ): sampling must return c."""
    s = Schedule(Config.from_preset("tiny"))
    c = torch.linspace(-0.8, 0.8, 64).reshape(1, 1, 8, 8).repeat(2, 1, 1, 1)
    ab = s.alphas_bar.float()

    def oracle(x, t):
        a = ab[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * c) / (1 - a).sqrt()

    gen = torch.Generator().manual_seed(0)
    out = sample_ddim(oracle, s, c.shape, gen, steps=20) if sampler == "ddim" else sample_ddpm(oracle, s, c.shape, gen)
    torch.testing.assert_close(out, c, atol=2e-3, rtol=0)


def test_augment_writes_pngs_resumes_and_never_overwrites(tiny_run, tmp_path):
    out = tmp_path / "synth"
    cli("augment", tiny_run, "--out", out, "--num-synthetic", "3", "--steps", "4", "--batch-size", "2", check=0)
    files = sorted(out.rglob("*.png"))
    assert len(files) == 9 and {f.parent.name for f in files} == {"benign", "malignant", "normal"}
    for f in files:
        with Image.open(f) as img:
            assert img.size == (32, 32) and img.mode == "L"
    record = json.loads((out / "augment.json").read_text())
    assert record["sampler"] == "ddim" and record["steps"] == 4 and len(record["diffusion_sha256"]) == 64
    first = {f: f.read_bytes() for f in files}
    victim = out / "malignant" / "synthetic_s0_00001.png"
    victim.unlink()
    (out / "benign" / "synthetic_s0_00000.png").write_bytes(b"user edited")
    res = cli("augment", tiny_run, "--out", out, "--num-synthetic", "3", "--steps", "4", "--batch-size", "2", check=0)
    assert "wrote 1 new image" in res.stdout
    assert victim.read_bytes() == first[victim]  # the same seeded batch regenerates the same image
    assert (out / "benign" / "synthetic_s0_00000.png").read_bytes() == b"user edited"


def test_balance_fills_minority_classes(tiny_run, tmp_path):
    from dcube_edge import rundir
    from dcube_edge.augment import balance_counts
    from dcube_edge.phantoms import write_demo

    data = tmp_path / "data"
    write_demo(data, per_class=6, size=16)
    for f in sorted((data / "normal").iterdir())[2:]:
        f.unlink()
    counts = balance_counts(rundir.load_config(tiny_run), str(data))
    # one image per class is held out for validation (15 %, at least one): 5, 5 and 1 stay in training
    assert counts == {"benign": 0, "malignant": 0, "normal": 4}


def test_training_with_synthetic_images_records_them(demo_data, tmp_path):
    from dcube_edge.phantoms import write_demo

    synth = tmp_path / "synth"
    write_demo(synth, per_class=4, size=32, seed=9)
    run = tmp_path / "run"
    cli("train", demo_data, "--out", run, "--epochs-diffusion", "1", "--epochs-classifier", "1",
        "--synthetic", synth, check=0)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["synthetic"] == str(synth.resolve()) and cfg["synthetic_counts"] == [4, 4, 4]
    assert json.loads((run / "metrics.json").read_text())["validation"]["n"] == 24  # validation untouched
