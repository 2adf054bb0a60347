"""How stable is the Gaussianity layer selection? (issue 11, docs/results-discussion.md)

Pooled features of every training image of a run once, then the selection on 200 random 256-image subsets
(what a run's seed used to change) and on all images. Usage: python research/experiments/selection_stability.py RUN_DIR"""
import collections
import json
import sys

import numpy as np
import torch

from dcube_edge import rundir, selection
from dcube_edge.data import discover
from dcube_edge.runtimes.preprocess import PreprocessSpec

torch.set_num_threads(2)
run = sys.argv[1]
cfg, model = rundir.load_model(run)
x = discover(cfg.data_root, cfg.val_fraction, cfg.split_seed).train.load(PreprocessSpec(size=cfg.image_size))
with torch.no_grad():
    feats = selection.layer_features(model.trunk, x, tuple(cfg.timesteps))
rng = np.random.default_rng(123)
sets: collections.Counter = collections.Counter()
layers: collections.Counter = collections.Counter()
for _ in range(200):
    picked = selection.select(selection.layer_pvalues(feats, rng.permutation(len(x))[:256]), cfg.p_threshold, cfg.max_layers)
    sets[picked] += 1
    layers.update(picked)
p_all = selection.layer_pvalues(feats)
print(json.dumps({"run": run, "n_train": len(x), "subsets": 200, "subset_size": 256, "distinct_sets": len(sets),
                  "most_common_sets": [[list(k), v] for k, v in sets.most_common(6)],
                  "layer_frequency": {int(k): v / 200 for k, v in sorted(layers.items())},
                  "all_images": list(selection.select(p_all, cfg.p_threshold, cfg.max_layers)),
                  "all_images_p": [float(f"{v:.3g}") for v in p_all]}))
