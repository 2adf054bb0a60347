"""Step-1 recipe (budgets, lr schedule, EMA, pair sampling; the autocast choice is tests/runtimes/test_isa.py) and the trunk diagnostics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from commands import cli

from dcube_edge.config import Config
from dcube_edge.errors import UserError
from dcube_edge.step1 import diagnostic_steps, ema_model, lr_factor, pick_partners
from dcube_edge.train import resolve_budgets


def test_pairs_are_same_or_other_class_as_flagged():
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 5)
    g = torch.Generator().manual_seed(0)
    anchors = torch.randperm(len(labels), generator=g)[:40]
    partners, different = pick_partners(labels, anchors, g)
    assert torch.equal(labels[partners] != labels[anchors], different)
    assert 0.3 < different.float().mean() < 0.7  # p = 0.5
    assert set(labels[partners[~different]].tolist()) <= {0, 1, 2}
    one_class = torch.zeros(8, dtype=torch.long)
    p, d = pick_partners(one_class, torch.arange(8), g)
    assert not d.any() and (p < 8).all()


def test_budgets_epochs_become_steps():
    cfg = Config.from_preset("small", epochs_diffusion=3, epochs_classifier=2)
    done = resolve_budgets(cfg, 546)
    assert done.steps_diffusion == 3 * (546 // 32) and done.steps_classifier == 2 * 9
    assert resolve_budgets(Config.from_preset("small"), 546).steps_diffusion == Config.from_preset("small").steps_diffusion


def test_lr_warms_up_then_decays_to_a_tenth():
    cfg = Config.from_preset("tiny", steps_diffusion=1000, warmup_steps=100)
    f = [lr_factor(cfg, s) for s in range(1000)]
    assert f[0] == pytest.approx(0.01) and f[99] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[100:], f[101:]))
    assert f[-1] == pytest.approx(0.1, abs=1e-3)
    const = cfg.replace(lr_schedule="constant")
    assert lr_factor(const, 999) == 1.0
    wsd = [lr_factor(cfg.replace(lr_schedule="wsd"), s) for s in range(1000)]
    assert wsd[:100] == f[:100] and set(wsd[100:751]) == {1.0}
    assert all(a >= b for a, b in zip(wsd[750:], wsd[751:])) and wsd[-1] == pytest.approx(0.1, abs=1e-3)


def test_ema_warmup_follows_the_formula():
    m = torch.nn.Linear(3, 1, bias=False)
    w0 = m.weight.detach().clone()
    ema = ema_model(m, 0.999)
    ema.update_parameters(m)  # first update copies
    with torch.no_grad():
        m.weight.zero_()
    ema.update_parameters(m)  # n = 1: decay min(0.999, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module.weight, w0 * d)


def test_diagnostic_steps_end_at_the_budget():
    assert diagnostic_steps(4000) == {800, 1600, 2400, 3200, 4000}
    assert max(diagnostic_steps(3)) == 3


def test_probe_separates_what_is_separable():
    from dcube_edge.diagnostics import best_probe, probe_auc

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 40)
    informative = rng.normal(size=(80, 5)) + y[:, None] * 3.0
    noise = rng.normal(size=(80, 5))
    assert probe_auc(informative[:60], y[:60], informative[60:], y[60:]) > 0.95
    assert probe_auc(noise[:60], y[:60], noise[60:], y[60:]) < 0.85
    best = best_probe({"timesteps": [10, 100], "token_mean": [[0.6, 0.7], [0.9, 0.65]], "spatial": None, "pixels": 0.8})
    assert best == {"kind": "token_mean", "timestep": 100, "layer": 0, "auc": 0.9, "over_pixels": pytest.approx(0.1)}


def test_linear_reference_is_the_wiener_filter():
    from dcube_edge.diagnostics import linear_reference
    from dcube_edge.diffusion import Schedule
    sched = Schedule(Config.from_preset("tiny"))
    rng = np.random.default_rng(0)
    iid = rng.uniform(-0.5, 0.5, (2000, 1, 4, 4)).astype(np.float32)  # no structure: gain v/(v+s) per pixel
    ref = linear_reference(sched, iid[:1500], iid[1500:])
    ab = float(sched.alphas_bar[500])
    s_, v = (1 - ab) / ab, 1 / 12
    assert ref["x0_mse"][3] / ref["image_variance"] == pytest.approx(s_ / (v + s_), abs=0.03)
    patterns = rng.normal(size=(2, 1024))  # rank-2 32 px images: the filter pools the noise over all pixels
    low_rank = np.clip(rng.normal(size=(1000, 2)) @ patterns * 0.3, -1, 1).reshape(1000, 1, 32, 32).astype(np.float32)
    ref = linear_reference(sched, low_rank[:800], low_rank[800:])
    assert ref["x0_mse"][3] / ref["image_variance"] < 0.3 and ref["x0_mse"][0] < ref["x0_mse"][3]


def test_memorised_reference_is_the_posterior_mean_over_the_training_images():
    from dcube_edge.diagnostics import BANDS, memorised_reference
    from dcube_edge.diffusion import Schedule
    sched = Schedule(Config.from_preset("tiny"))
    rng = np.random.default_rng(1)
    bank = rng.uniform(-1, 1, (40, 1, 8, 8)).astype(np.float32)
    seen = memorised_reference(sched, bank, bank[:10], seed=3, chunk=4)  # images it has memorised
    assert seen["train_images"] == 40 and seen["timesteps"] == list(BANDS)
    assert seen["x0_mse"][0] / seen["image_variance"] < 0.01 and seen["x0_mse"][1] / seen["image_variance"] < 0.05
    fresh = rng.uniform(-1, 1, (10, 1, 8, 8)).astype(np.float32)  # unseen iid images: it returns training images
    unseen = memorised_reference(sched, bank, fresh, seed=3)
    assert unseen["x0_mse"][1] / unseen["image_variance"] > 1.0
    # brute force at t = 500: softmax of −‖x_t − √ᾱ x_k‖² / 2(1 − ᾱ) over k, then the weighted mean
    ab = float(sched.alphas_bar[500])
    noise = torch.randn(fresh.shape, generator=torch.Generator().manual_seed(3)).numpy()
    x_t = (ab ** 0.5 * fresh + (1 - ab) ** 0.5 * noise).reshape(10, -1).astype(np.float64)
    flat = bank.reshape(40, -1).astype(np.float64)
    logw = -((x_t[:, None] - ab ** 0.5 * flat[None]) ** 2).sum(-1) / (2 * (1 - ab))
    w = np.exp(logw - logw.max(1, keepdims=True))
    x0_hat = np.clip((w / w.sum(1, keepdims=True)) @ flat, -1, 1)
    assert unseen["x0_mse"][3] == pytest.approx(((x0_hat - fresh.reshape(10, -1)) ** 2).mean(), rel=1e-4)


def test_every_run_writes_trunk_diagnostics(tiny_run):
    report = json.loads((tiny_run / "trunk.json").read_text())
    assert (tiny_run / "trunk.png").stat().st_size > 10_000
    last = report["checkpoints"][-1]
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert last["step"] == cfg["steps_diffusion"]
    assert len(last["probes"]["token_mean"][0]) == 2 * cfg["depth"] + 1
    assert len(last["probes"]["spatial"]) == len(last["probes"]["timesteps"])
    assert 0 <= report["pixel_probe"] <= 1 and report["x0_ratio_t500"] > 0
    linear = last["linear_reference"]
    assert linear["timesteps"] == last["denoising"]["timesteps"]
    assert linear["image_variance"] == pytest.approx(last["denoising"]["image_variance"])
    assert report["linear_x0_ratio_t500"] == pytest.approx(linear["x0_mse"][3] / linear["image_variance"])
    memorised = last["memorised_reference"]
    assert memorised["image_variance"] == pytest.approx(last["denoising"]["image_variance"])
    assert report["memorised_x0_ratio_t500"] == pytest.approx(memorised["x0_mse"][3] / memorised["image_variance"])
    den = last["denoising"]
    assert den["timesteps"] == [10, 100, 250, 500, 750] and all(v > 0 for v in den["eps_mse"])
    assert cfg["amp"] in ("none", "bf16")  # "auto" is recorded as what it resolved to
    log = (tiny_run / "train.log").read_text()
    assert log.count(" eps/px ") >= 1
    assert log.count("checkpoint step ") == len(report["checkpoints"])  # one line per checkpoint, during step 1
    assert f"checkpoint step {last['step']}: x0-MSE/variance at t=500 {report['x0_ratio_t500']:.2f}" in log


def test_random_trunk_and_branch_baseline_rows(demo_data, tmp_path):
    from safetensors.torch import load_file

    from dcube_edge.loop import seed_all
    from dcube_edge.uvit import UViT

    run = tmp_path / "random"
    cli("train", demo_data, "--out", run, "--trunk", "random", "--steps-classifier", "4", "--batch-size", "16", check=0)
    cfg = Config.from_dict({k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "versions"})
    seed_all(cfg.seed)
    fresh = UViT(cfg, len(cfg.classes)).state_dict()
    saved = load_file(str(run / "diffusion.safetensors"))
    assert all(torch.equal(fresh[k], saved[k]) for k in fresh)
    assert json.loads((run / "trunk.json").read_text())["checkpoints"][0]["step"] == 0
    branch = tmp_path / "branch"
    cli("baseline", demo_data, "--out", branch, "--model", "branch", "--preset", "tiny", "--epochs", "1", check=0)
    weights = load_file(str(branch / "baseline.safetensors"))
    assert weights["backbone.conv1.weight"].shape[0] == cfg.resnet_width


def test_class_weights_are_inverse_frequency():
    from dcube_edge.loop import class_weights

    cfg = Config.from_preset("tiny", classes=("a", "b", "c"))
    assert cfg.class_weights == "balanced"  # the default since 2026-11-26
    assert class_weights(cfg.replace(class_weights="none"), np.array([0, 1])) is None
    w = class_weights(cfg.replace(class_weights="balanced"), np.array([0] * 6 + [1] * 3 + [2] * 1))
    torch.testing.assert_close(w, torch.tensor([10 / 18, 10 / 9, 10 / 3]))
    with pytest.raises(UserError, match="unknown --class-weights .median."):
        class_weights(cfg.replace(class_weights="median"), np.array([0, 1]))


def test_guide_classifier_is_training_only(tmp_path):
    """The guide loss adds a classifier that sees the pooled guide map in training and leaves inference alone."""
    from dcube_edge.head import DCube

    cfg = Config.from_preset("tiny", classes=("a", "b"), selected_layers=(1,), guide_loss_weight=0.5)
    model = DCube(cfg, 2)
    x = torch.randn(4, 1, 32, 32)
    model.train()
    model(x)
    assert model.head.last_guide_logits.shape == (4, 2)
    model.eval()
    plain = DCube(cfg.replace(guide_loss_weight=0.0), 2).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "guide_classifier" not in k})
    torch.testing.assert_close(model(x), plain(x))


@pytest.mark.parametrize("args, message", [
    (["--timesteps", "0,5000"], "must lie in 1..999"), (["--steps-diffusion", "0"], "--steps-diffusion must be at least 1"),
    (["--epochs-classifier", "0"], "--epochs-classifier must be at least 1"), (["--ema-decay", "1.5"], "--ema-decay"),
    (["--class-weights", "median"], "--class-weights"), (["--lr-schedule", "step"], "--lr-schedule")])
def test_bad_training_options_are_refused_before_any_work(demo_data, tmp_path, args, message):
    res = cli("train", demo_data, "--out", tmp_path / "r", *args, check=2)
    assert message in res.stderr and "Traceback" not in res.stderr and not (tmp_path / "r").exists()


def test_min_snr_weights_cap_the_low_noise_timesteps():
    from dcube_edge.diffusion import Schedule, eps_loss, min_snr_weights
    sched = Schedule(Config.from_preset("tiny"))
    snr = sched.alphas_bar / (1 - sched.alphas_bar)
    w = min_snr_weights(sched, 5.0)
    high = snr > 5
    assert torch.all(w[~high] == 1) and torch.allclose(w[high].double(), 5 / snr[high], rtol=1e-5)
    assert w[0] < 0.01 and torch.all(min_snr_weights(sched, 0) == 1)
    pred, noise = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    assert eps_loss(pred, noise, torch.tensor([1.0, 0.0])) == pytest.approx(8.0)  # 16 px · 1, 16 px · 0, mean


def test_step1_peak_lr_and_min_snr_reach_the_optimizer(tmp_path):
    from dcube_edge.step1 import train_diffusion
    cfg = Config.from_preset("tiny", steps_diffusion=4, batch_size=8, classes=("a", "b"), warmup_steps=1,
                             lr_schedule="constant", diffusion_lr=6e-4, min_snr_gamma=5.0)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (16, 1, 32, 32)).astype(np.float32)
    _, history, _ = train_diffusion(cfg, images, np.array([0, 1] * 8), tmp_path / "d.pt", lambda *a: None, resume=False)
    assert history[-1]["lr"] == pytest.approx(6e-4)  # step 1 at its own lr; step 2 keeps cfg.lr
    state = torch.load(tmp_path / "d.pt", weights_only=True)
    assert all(g["lr"] == pytest.approx(6e-4) for g in state["opt"]["param_groups"])
    with pytest.raises(UserError, match="--diffusion-lr"):
        Config.from_preset("tiny", diffusion_lr=0.0)


def test_input_skip_gives_the_linear_eps_estimate_and_leaves_features_alone():
    from dcube_edge.diffusion import Schedule
    from dcube_edge.uvit import UViT
    cfg = Config.from_preset("tiny")
    torch.manual_seed(0)
    plain, skip = UViT(cfg, 2).eval(), UViT(cfg.replace(input_skip=True), 2).eval()
    skip.load_state_dict(plain.state_dict())  # same weights: the skip adds no parameter
    assert set(plain.state_dict()) == set(skip.state_dict())
    x0 = torch.rand(16, 1, 32, 32) - 0.5  # spread about the assumed σ
    noise = torch.randn_like(x0)
    t = torch.full((16,), 750)
    x_t = Schedule(cfg).q_sample(x0, t, noise)
    with torch.no_grad():
        for a, b in zip(plain.layers(x_t, t), skip.layers(x_t, t)):
            torch.testing.assert_close(a, b)
        err_plain = (plain(x_t, t)[0] - noise).pow(2).mean()
        err_skip = (skip(x_t, t)[0] - noise).pow(2).mean()
    assert err_skip < 0.1 < err_plain  # untrained: ε̂ ≈ g(t)·x_t vs ε̂ ≈ 0
