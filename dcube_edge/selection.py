"""Gaussianity layer selection (docs/method.md).

For every trunk layer: the tokens of each image are averaged (over tokens and the fixed timesteps)
to one width-sized vector; the images' vectors are projected on their first principal component
and D'Agostino–Pearson's test (``scipy.stats.normaltest``) gives a p-value for that 1-D sample.
Class structure makes the leading direction multi-modal, so a small p marks an informative layer.
Layers with p < threshold are kept, the ``max_layers`` smallest if more pass, the single smallest if
none does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import stats

from dcube_edge.errors import UserError

from .uvit import UViT


@torch.no_grad()
def layer_features(trunk: UViT, images: np.ndarray, timesteps: tuple[int, ...], batch: int = 64) -> list[np.ndarray]:
    """Per trunk layer, the (n, width) token- and timestep-averaged features of ``images``."""
    trunk.eval()
    dev = next(trunk.parameters()).device
    ts = torch.tensor(timesteps, dtype=torch.long, device=dev)
    pooled: list[list[np.ndarray]] = [[] for _ in range(trunk.num_layers)]
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(dev)
        b = x.shape[0]
        outs = trunk.layers(x.repeat(len(ts), 1, 1, 1), ts[:, None].expand(-1, b).reshape(-1))
        for k, h in enumerate(outs):
            pooled[k].append(h.mean(1).unflatten(0, (len(ts), b)).mean(0).float().cpu().numpy())
    return [np.concatenate(feats) for feats in pooled]


def layer_pvalues(features: list[np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
    """One normality-test p-value per layer (on ``rows`` of the features only, if given)."""
    return np.asarray([pc1_pvalue(f if rows is None else f[rows]) for f in features])


def stability(features: list[np.ndarray], threshold: float, max_layers: int, draws: int = 50,
              seed: int = 0) -> list[float] | None:
    """How often each layer is selected on random halves of the sample: a pick that moves with the
    sample (measured on BreastMNIST: 44 different layer sets over 200 256-image subsets) is noise.
    None where halves would be too small for the normality test (fewer than 20 images)."""
    n = len(features[0])
    if n // 2 < 20:
        return None
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(features))
    for _ in range(draws):
        counts[list(select(layer_pvalues(features, rng.permutation(n)[: n // 2]), threshold, max_layers))] += 1
    return (counts / draws).tolist()


def pc1_pvalue(features: np.ndarray) -> float:
    """Normality-test p-value of the (n, d) features' scores on their first principal component."""
    f = features.astype(np.float64) - features.mean(0)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return float(stats.normaltest(u[:, 0] * s[0]).pvalue)


def select(pvalues: np.ndarray, threshold: float, max_layers: int) -> tuple[int, ...]:
    order = np.argsort(pvalues, kind="stable")
    passing = [int(i) for i in order if pvalues[i] < threshold][:max_layers]
    return tuple(sorted(passing or [int(order[0])]))


def parse_choice(choice: str, num_layers: int) -> tuple[int, ...] | None:
    """``--layers``: None for "gaussianity" (decided after step 1), else the fixed layer indices."""
    if choice == "gaussianity":
        return None
    if choice == "all":
        return tuple(range(num_layers))
    if choice == "last":
        return (num_layers - 1,)
    try:
        layers = tuple(sorted({int(v) for v in choice.split(",")}))
    except ValueError:
        raise UserError(f"--layers {choice!r}: use gaussianity, all, last or indices such as 4,5") from None
    if not layers or any(not 0 <= i < num_layers for i in layers):
        raise UserError(f"--layers {choice!r}: indices must lie in 0..{num_layers - 1} for this preset")
    return layers


def plot(pvalues: np.ndarray, selected: tuple[int, ...], threshold: float, path: Path, title: str,
         frequency: list[float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = -np.log10(np.clip(pvalues, 1e-300, 1.0))
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=120)
    colors = ["tab:red" if i in selected else "tab:gray" for i in range(len(pvalues))]
    ax.bar(range(len(pvalues)), score, color=colors)
    ax.axhline(-np.log10(threshold), ls="--", c="k", lw=1, label=f"p = {threshold}")
    ax.set_xticks(range(len(pvalues)))
    ax.set_xlabel("trunk layer (in-blocks, mid, out-blocks)")
    ax.set_ylabel("-log10 p (normality test)")
    ax.set_title(title, fontsize=9)
    if frequency is not None:  # selection frequency on random halves of the sample, on a right axis
        twin = ax.twinx()
        twin.plot(range(len(frequency)), frequency, "o", color="tab:blue", ms=4, label="picked on random halves")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("selection frequency", color="tab:blue")
        twin.legend(fontsize=8, loc="upper right")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
