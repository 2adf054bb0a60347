"""Issue-6 switches: --layers, --trunk (step 2 only), --random-t, the seed-independent validation
split, and the results driver behind docs/results.md."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from commands import cli
from safetensors.torch import load_file

from dcube_edge import rundir, selection
from dcube_edge.data import discover, read_split
from dcube_edge.errors import UserError
from dcube_edge.loop import predict_logits
from dcube_edge.metrics import classification_report, softmax
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.step2 import predict_logits_random_t, random_timesteps
from research import ablation


def test_layer_choice_parsing():
    assert selection.parse_choice("gaussianity", 13) is None
    assert selection.parse_choice("all", 13) == tuple(range(13))
    assert selection.parse_choice("last", 13) == (12,)
    assert selection.parse_choice("5,4,5", 13) == (4, 5)
    for bad in ("13", "-1", "four", ""):
        with pytest.raises(UserError, match="--layers"):
            selection.parse_choice(bad, 13)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_trunk_reuse_trains_step_2_only_and_checks_compatibility(tiny_run, demo_data, tmp_path):
    run = tmp_path / "reuse"
    cli("train", demo_data, "--out", run, "--trunk", tiny_run, "--layers", "last", "--epochs-classifier", "1",
        "--batch-size", "16", check=0)
    assert _same_weights(run / "diffusion.safetensors", tiny_run / "diffusion.safetensors")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["trunk_from"] == str(tiny_run.resolve()) and cfg["preset"] == "tiny"  # preset taken from the trunk run
    assert cfg["layer_choice"] == "last" and cfg["selected_layers"] == [4]
    m = json.loads((run / "metrics.json").read_text())
    assert m["history"]["diffusion"] == [] and not (run / "state" / "diffusion.pt").exists()
    (epoch,) = m["history"]["classifier"]  # each epoch records the argmax macro-F1 beside the AUC it is picked on
    assert epoch["val_macro_f1"] == pytest.approx(m["validation"]["macro_f1"], abs=1e-6)
    assert json.loads((run / "selection.json").read_text())["layer_choice"] == "last"

    res = cli("train", demo_data, "--out", tmp_path / "wide", "--trunk", tiny_run, "--preset", "small", check=2)
    assert "another architecture" in res.stderr and "--preset tiny" in res.stderr and not (tmp_path / "wide").exists()
    res = cli("train", demo_data, "--out", tmp_path / "deep", "--layers", "7", check=2)
    assert "0..4" in res.stderr and not (tmp_path / "deep").exists()
    res = cli("train", demo_data, "--out", tmp_path / "none", "--trunk", tmp_path, check=2)
    assert "not a run directory" in res.stderr


def test_random_timesteps_are_per_image_in_range_and_seeded():
    cfg = rundir.Config.from_preset("tiny")
    t = random_timesteps(cfg, 5000, torch.Generator().manual_seed(0))
    assert t.shape == (1, 5000) and int(t.min()) >= 1 and int(t.max()) <= max(cfg.timesteps)
    assert len(torch.unique(t)) == max(cfg.timesteps)
    assert torch.equal(t, random_timesteps(cfg, 5000, torch.Generator().manual_seed(0)))


def test_random_t_run_validates_as_the_reference_and_records_the_engine_view(tiny_run, demo_data, tmp_path):
    run = tmp_path / "rt"
    cli("train", demo_data, "--out", run, "--trunk", tiny_run, "--random-t", "--epochs-classifier", "2",
        "--batch-size", "16", check=0)
    cfg, model = rundir.load_model(run)
    assert cfg.random_t
    _, val = read_split(demo_data / "val", list(cfg.classes))
    x = val.load(PreprocessSpec(cfg.image_size))
    random_t = predict_logits_random_t(model, x, cfg)
    np.testing.assert_array_equal(random_t, predict_logits_random_t(model, x, cfg))  # seeded: reruns agree
    fixed = predict_logits(model, x)
    assert not np.allclose(random_t, fixed, atol=1e-4)  # t reaches the head: random and fixed t differ
    m = json.loads((run / "metrics.json").read_text())
    classes = list(cfg.classes)
    for key, logits in (("validation", random_t), ("validation_fixed_t", fixed)):
        want = classification_report(val.labels, softmax(logits), classes)
        assert m[key]["auc"] == pytest.approx(want["auc"]) and m[key]["confusion_matrix"] == want["confusion_matrix"]


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> Path:
    """Phantoms without a val/ folder (split carved from train), one class cut to a third."""
    from dcube_edge.phantoms import write_demo

    root = tmp_path_factory.mktemp("imbalanced") / "breastmnist"
    write_demo(root, per_class=24, size=32, seed=3)
    for path in sorted((root / "malignant").glob("*.png"))[8:]:
        path.unlink()
    return root


def test_results_driver_does_not_retrain_a_branch_that_is_a_baseline(tmp_path):
    said = []
    assert ablation.run(tmp_path / "runs", tmp_path, [("breastmnist", "branch", 0)], preset="small", echo=said.append) == []
    assert "the small guide branch is resnet18" in said[0]
    assert not ablation.run_dir(tmp_path / "runs", "breastmnist", "branch", 0).exists()


def test_ablation_rows_with_several_seeds_are_summarised_against_dcube_seed_for_seed():
    from research.ablation import seeded_ablations

    def row(auc, f1, recalls):
        return {"metrics": {"validation": {"auc": auc, "macro_f1": f1, "per_class_recall": dict(zip("ab", recalls))}}}

    rows = {("breastmnist", "dcube", 0): row(0.90, 0.7, (0.3, 1.0)), ("breastmnist", "dcube", 1): row(0.94, 0.8, (0.6, 0.9)),
            ("breastmnist", "random-trunk", 0): row(0.95, 0.8, (0.8, 0.9)),
            ("breastmnist", "random-trunk", 1): row(0.93, 0.9, (0.7, 1.0)),
            ("breastmnist", "long-trunk", 0): row(0.99, 0.9, (0.9, 0.9))}  # one seed: stays in the seed-0 table only
    lines = seeded_ablations(rows)
    table = [line for line in lines if line.startswith("| breastmnist")]
    assert len(table) == 1 and table[0].startswith("| breastmnist | random-trunk | 0, 1 | 0.940 ± 0.014 (2 seeds) | 0.850 ± 0.071")
    assert "| 0.75 |" in table[0] and "0.020 ± 0.042 (2 seeds) (ahead in 1 of 2)" in table[0]
    assert seeded_ablations({k: v for k, v in rows.items() if k[1] != "random-trunk"}) == []
    # a headline-only root (a re-run of the headline) renders no ablation section at all, not a plan of "not run" rows
    assert ablation.ablation_section({k: v for k, v in rows.items() if k[1] == "dcube"}) == []


def test_a_headline_only_report_points_at_the_dated_reports_for_ablations(tmp_path):
    out = tmp_path / "results.md"
    assert ablation._archived_ablations(Path("runs/x"), out)[-1] == "None trained under `runs/x`."
    for day in ("2026-11-25", "2026-11-26"):
        (tmp_path / f"results-{day}.md").write_text("# old\n")
    (tmp_path / "results-summary.md").write_text("# not a dated report\n")
    assert ablation._archived_ablations(Path("runs/x"), out)[-1] == (
        "None trained under `runs/x`; the latest measured are in the dated reports beside this one: "
        "[2026-11-26](./results-2026-11-26.md), [2026-11-25](./results-2026-11-25.md).")


def test_results_driver_trains_the_plan_resumably_and_renders_tables(imbalanced, tmp_path):
    root, data = tmp_path / "runs", imbalanced.parent
    plan = [("breastmnist", v, s) for v, s in
            (("dcube", 0), ("dcube", 1), ("resnet18", 0), ("branch", 0), ("all-layers", 0), ("random-t", 0), ("balance", 0),
                              ("long-trunk", 0))]
    assert ablation.run(root, data, plan, preset="tiny", steps=(8, 4), echo=lambda *_: None) == []

    def cfg(variant, seed=0):
        return json.loads((ablation.run_dir(root, "breastmnist", variant, seed) / "config.json").read_text())

    # One validation split for every seed, so seeds compare models, not splits.
    assert cfg("dcube", 0)["val_source"] == cfg("dcube", 1)["val_source"] == "stratified 15% of the class folders (seed 0)"
    assert cfg("dcube", 1)["seed"] == 1
    dcube = ablation.run_dir(root, "breastmnist", "dcube", 0)
    for variant in ("all-layers", "random-t", "balance"):
        assert _same_weights(ablation.run_dir(root, "breastmnist", variant, 0) / "diffusion.safetensors",
                             dcube / "diffusion.safetensors")
    assert cfg("all-layers")["selected_layers"] == [0, 1, 2, 3, 4] and cfg("random-t")["random_t"]
    # --balance fills each class of the training split up to the majority
    counts = np.asarray(discover(imbalanced).train.counts(3))
    assert list(cfg("balance")["synthetic_counts"]) == list(counts.max() - counts)
    assert len(list((root / "breastmnist" / "synthetic-s0").rglob("*.png"))) == int((counts.max() - counts).sum())
    # the Gaussianity test samples real training images only: same trunk, same p-values with synthetic data mixed in
    sel = {v: json.loads((ablation.run_dir(root, "breastmnist", v, 0) / "selection.json").read_text()) for v in ("dcube", "balance")}
    assert sel["balance"]["p_values"] == sel["dcube"]["p_values"]

    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")}
    said = []
    ablation.run(root, data, plan, preset="tiny", steps=(8, 4), echo=said.append)
    assert all(line.endswith("kept") for line in said)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")} == stamps

    out = tmp_path / "docs" / "results.md"
    text = ablation.report(root, out, out.parent / "figures" / "sel.png")
    assert out.read_text() == text and (out.parent / "figures" / "sel.png").stat().st_size > 0
    auc0 = json.loads((dcube / "metrics.json").read_text())["validation"]["auc"]
    auc1 = json.loads((ablation.run_dir(root, "breastmnist", "dcube", 1) / "metrics.json").read_text())["validation"]["auc"]
    assert f"{np.mean([auc0, auc1]):.3f} ± {np.std([auc0, auc1], ddof=1):.3f} (2 seeds)" in text
    assert "| breastmnist | no-contrastive |" in text and "not run" in text  # rows not trained say so
    assert ", on macro-F1 at the operating point in " in text  # same-seed D-Cube − ResNet-18 at the point, too
    assert "fixed-t engine: AUC" in text and "synthetic)" in text
    assert "| breastmnist | ResNet branch alone |" in text and "| breastmnist | dcube | 8 |" in text  # trunk table
    assert (out.parent / "figures" / "trunk-curves.png").stat().st_size > 0
    assert cfg("dcube")["steps_diffusion"] == 8 and cfg("all-layers")["steps_classifier"] == 4
    assert cfg("long-trunk")["steps_diffusion"] == 16 and cfg("long-trunk")["lr_schedule"] == "constant"
    assert cfg("long-trunk")["steps_classifier"] == 4 and "| breastmnist | long-trunk | 16 |" in text
    # a step-2 variant on another trunk than the D-Cube row's says so (its Δ mixes two changes)
    assert "(on another trunk" not in text
    moved = ablation.run_dir(root, "breastmnist", "all-layers", 0) / "config.json"
    moved.write_text(json.dumps({**cfg("all-layers"), "trunk_from": str(ablation.run_dir(root, "breastmnist", "long-trunk", 0))}))
    assert ("(on another trunk than the D-Cube row's: step 1 with lr_schedule constant; Δ mixes two changes)"
            in ablation.report(root, out))
    # a trunk whose step 2 is still running (trunk.json, no metrics.json) is in the trunk table, not the others
    pending = ablation.run_dir(root, "breastmnist", "no-ema", 0)
    pending.mkdir()
    shutil.copy(dcube / "trunk.json", pending / "trunk.json")
    text = ablation.report(root, out)
    assert "| breastmnist | no-ema | 8 |" in text and "| breastmnist | no-ema | step 1 without EMA (trunk retrained) | | not run |" in text
    assert "Trained before the defaults changed" not in text  # the tiny rows use tiny's current step-1 recipe
    # a headline row whose trunk used another step-1 recipe says so (here: seed 1's trunk, as if trained at a constant lr)
    seed1 = ablation.run_dir(root, "breastmnist", "dcube", 1) / "config.json"
    seed1.write_text(json.dumps({**cfg("dcube", 1), "lr_schedule": "constant"}))
    text = ablation.report(root, out)
    assert "**Trained before the defaults changed:** breastmnist seed 1 — step 1 with lr_schedule constant (now cosine)." in text
    # a seed that reuses the seed-0 trunk says so, and its train time includes that trunk's step 1
    seed1.write_text(json.dumps({**cfg("dcube", 1), "lr_schedule": cfg("dcube")["lr_schedule"], "trunk_from": str(dcube)}))
    text = ablation.report(root, out)
    assert "**One trunk per dataset:** breastmnist seed 1 reuse" in text and "Trained before" not in text
    seconds = {s: json.loads((ablation.run_dir(root, "breastmnist", "dcube", s) / "metrics.json").read_text())["seconds"]
               for s in (0, 1)}
    row = ablation._rows(root)["breastmnist", "dcube", 1]
    assert ablation._seconds_with_trunk(row) == pytest.approx(sum(seconds[1].values()) + seconds[0]["diffusion"])


def test_layer_selection_does_not_move_with_the_step2_seed(tiny_run, demo_data, tmp_path):
    """The Gaussianity sample is drawn with the split seed: a reseeded step 2 on the same trunk sees the
    same images, gets the same p-values and layers, and records how often each layer wins on random halves."""
    from dcube_edge.config import Config
    from dcube_edge.train import train

    cfg = Config.from_preset("tiny", epochs_diffusion=2, steps_classifier=2, batch_size=16, selection_samples=64,
                             seed=7, trunk_from=str(tiny_run))
    train(demo_data, tmp_path / "reseeded", cfg, log=lambda *_: None)
    before, after = (json.loads((run / "selection.json").read_text()) for run in (tiny_run, tmp_path / "reseeded"))
    assert after["p_values"] == before["p_values"] and after["selected_layers"] == before["selected_layers"]
    freq = after["frequency_on_halves"]["per_layer"]
    assert len(freq) == len(after["p_values"]) and all(0 <= f <= 1 for f in freq)
