import numpy as np
import pytest
import torch

from dcube_edge.config import PRESETS, Config
from dcube_edge.diffusion import Schedule, eps_loss, margin_contrastive, sample_ddim, sample_ddpm
from dcube_edge.errors import UserError
from dcube_edge.head import DCube
from dcube_edge.selection import pc1_pvalue, select, stability
from dcube_edge.uvit import UViT


def tiny(**kw) -> Config:
    return Config.from_preset("tiny", **kw)


def test_uvit_exposes_all_layers_with_time_token():
    cfg = tiny()
    trunk = UViT(cfg, num_classes=3).eval()
    outs = trunk.layers(torch.zeros(2, 1, 32, 32), torch.tensor([1, 2]))
    assert len(outs) == cfg.num_layers == 2 * cfg.depth + 1
    assert all(o.shape == (2, 1 + cfg.grid ** 2, cfg.width) for o in outs)


def test_layers_stop_after_requested_block():
    trunk = UViT(tiny(), 3).eval()
    called = []
    for i, blk in enumerate([*trunk.in_blocks, trunk.mid_block, *trunk.out_blocks]):
        blk.register_forward_hook(lambda *_, i=i: called.append(i))
    outs = trunk.layers(torch.zeros(1, 1, 32, 32), torch.tensor([5]), upto=2)
    assert len(outs) == 3 and called == [0, 1, 2]


def test_layers_match_full_forward():
    trunk = UViT(tiny(), 3).eval()
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([3, 400])
    full = trunk.layers(x, t)
    part = trunk.layers(x, t, upto=3)
    torch.testing.assert_close(part[3], full[3])


def test_class_embedding_added_and_droppable():
    trunk = UViT(tiny(), 3).eval()
    x, t, y = torch.randn(2, 1, 32, 32), torch.tensor([3, 3]), torch.tensor([0, 1])
    plain = trunk.tokens(x, t)
    cond = trunk.tokens(x, t, y)
    dropped = trunk.tokens(x, t, y, drop=torch.tensor([True, True]))
    torch.testing.assert_close(cond - plain, trunk.class_embed(y)[:, None].expand_as(plain))
    torch.testing.assert_close(dropped, plain)


def test_eps_prediction_shape_and_loss_is_summed():
    trunk = UViT(tiny(), 3)
    x = torch.randn(4, 1, 32, 32)
    eps, mid = trunk(x, torch.randint(0, 1000, (4,)), torch.tensor([0, 1, 2, 0]))
    assert eps.shape == x.shape and mid.shape[1] == 1 + tiny().grid ** 2
    assert eps_loss(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)).item() == 16.0


def test_margin_contrastive():
    a, b = torch.zeros(2, 5), torch.full((2, 5), 0.2)  # D = 0.04 per pair
    same = margin_contrastive(a, b, torch.tensor([False, False]), 0.1)
    diff = margin_contrastive(a, b, torch.tensor([True, True]), 0.1)
    assert same.item() == pytest.approx(0.04) and diff.item() == pytest.approx(0.06)
    far = margin_contrastive(a, b + 1, torch.tensor([True, True]), 0.1)
    assert far.item() == 0.0


def test_q_sample_endpoints():
    s = Schedule(tiny())
    x, n = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    assert s.q_sample(x, torch.tensor([0]), n).mean().item() == pytest.approx(1.0, abs=1e-3)
    assert s.q_sample(x, torch.tensor([999]), n).mean().item() < 0.01


def test_samplers_are_seeded_and_bounded():
    cfg = tiny(diffusion_steps=20, timesteps=(5, 10))
    s = Schedule(cfg)
    eps = lambda x, t: 0.1 * x  # noqa: E731
    a = sample_ddim(eps, s, (2, 1, 8, 8), torch.Generator().manual_seed(1), steps=5)
    b = sample_ddim(eps, s, (2, 1, 8, 8), torch.Generator().manual_seed(1), steps=5)
    torch.testing.assert_close(a, b)
    c = sample_ddpm(eps, s, (2, 1, 8, 8), torch.Generator().manual_seed(1))
    assert a.abs().max() <= 1 and c.abs().max() <= 1 and c.shape == (2, 1, 8, 8)


def test_dcube_averages_timesteps_and_truncates():
    cfg = tiny(timesteps=(10, 50, 100))
    model = DCube(cfg, 3, layers=(1, 2)).eval()
    assert model.truncate_after == 2
    x = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        logits = model(x)
        per_t = [model.head([f for f in model.features(x, torch.tensor([t]))], x, 1) for t in cfg.timesteps]
    assert logits.shape == (5, 3)
    torch.testing.assert_close(logits, torch.stack(per_t).mean(0), atol=1e-5, rtol=1e-4)


def test_presets_are_data_and_paper_sizes_match_reference():
    p = Config.from_preset("paper")
    assert (p.image_size, p.patch_size, p.width, p.heads, p.depth, p.num_layers) == (128, 8, 512, 8, 6, 13)
    assert p.grid ** 2 + 1 == 257
    assert set(PRESETS) == {"tiny", "small", "paper"}
    with pytest.raises(UserError, match="unknown preset"):
        Config.from_preset("huge")


def test_guide_branch_twin_is_the_identical_baseline_network():
    from dcube_edge.resnet import Baseline, branch_twin, guide_branch

    assert branch_twin(tiny()) is None  # width 8: no standard network
    for preset, twin in (("small", "resnet18"), ("paper", "resnet50")):
        cfg = Config.from_preset(preset)
        assert branch_twin(cfg) == twin
        branch = guide_branch(cfg).state_dict()
        base = Baseline(Config.from_preset(preset, model=twin), 2).backbone.state_dict()
        assert {k: v.shape for k, v in branch.items()} == {k: v.shape for k, v in base.items()}
    # a changed branch is no longer a twin
    assert branch_twin(Config.from_preset("small", resnet_block="bottleneck", resnet_width=16)) is None


def test_config_roundtrip_and_unknown_keys():
    cfg = tiny(classes=("a", "b"), selected_layers=(1, 2))
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserError, match="unknown keys"):
        Config.from_dict({**cfg.to_dict(), "bogus": 1})


def test_gaussianity_statistic_separates_bimodal_from_gaussian():
    rng = np.random.default_rng(0)
    gaussian = rng.normal(size=(200, 16))
    bimodal = gaussian.copy()
    bimodal[:100, 0] += 8
    assert pc1_pvalue(gaussian) > 0.05
    assert pc1_pvalue(bimodal) < 1e-6


def test_selection_stability_on_random_halves():
    rng = np.random.default_rng(0)
    gaussian = [rng.normal(size=(300, 16)) for _ in range(3)]
    bimodal = gaussian[1].copy()
    bimodal[:150, 0] += 8  # one layer with a clear two-group structure, two without
    freq = stability([gaussian[0], bimodal, gaussian[2]], threshold=0.05, max_layers=1, draws=20)
    assert freq[1] == 1.0 and freq[0] < 0.5 and freq[2] < 0.5 and len(freq) == 3
    assert stability([g[:30] for g in gaussian], threshold=0.05, max_layers=1) is None  # halves of 15: too few


def test_select_rules():
    p = np.array([0.5, 0.01, 0.2, 0.001, 0.03, 0.9])
    assert select(p, 0.05, 2) == (1, 3)
    assert select(p, 0.05, 5) == (1, 3, 4)
    assert select(np.array([0.5, 0.3, 0.9]), 0.05, 3) == (1,)  # none pass: the most non-Gaussian


def test_a_collapsed_model_is_reported():
    import numpy as np

    from dcube_edge.metrics import classification_report, collapse_warning

    labels = np.array([0, 1, 2, 0])
    flat = np.tile([0.2, 0.5, 0.3], (4, 1))
    assert "predicted 'malignant'" in collapse_warning(classification_report(labels, flat, ["benign", "malignant", "normal"]))
    good = np.eye(3)[labels]
    assert collapse_warning(classification_report(labels, good, ["benign", "malignant", "normal"])) is None
    ranked = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.55, 0.45], [0.3, 0.7]])
    binary = np.array([0, 0, 0, 1, 1, 1])  # AUC 1, but the argmax calls two of three positives negative
    warning = collapse_warning(classification_report(binary, ranked, ["benign", "malignant"]))
    assert "'malignant' is 0.33 at AUC 1.000" in warning and "operating point" in warning
    assert collapse_warning(classification_report(binary, ranked[::-1], ["benign", "malignant"])) is None  # AUC 0
    absent = classification_report(np.array([0, 1, 0]), np.eye(3)[[0, 1, 0]], ["a", "b", "c"])
    assert absent["auc"] != absent["auc"] and "class c" in absent["undefined"]["auc"]  # NaN, with the reason
    assert absent["per_class_recall"]["c"] is None


def test_out_block_without_its_skip_and_tokens_without_time_are_refused():
    from dcube_edge.uvit import Block

    x = torch.zeros(1, 5, 16)
    with pytest.raises(ValueError, match="long skip"):
        Block(16, 2, 2, skip=True)(x)
    assert Block(16, 2, 2, skip=True)(x, x).shape == x.shape
    with pytest.raises(ValueError, match="timesteps t or precomputed time tokens"):
        UViT(tiny(), 3).tokens(torch.zeros(1, 1, 32, 32), None)
