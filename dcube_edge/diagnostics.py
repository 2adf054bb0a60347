"""What a trunk has learned, measured on held-out images (``trunk.json`` + ``trunk.png`` in every run).

- Denoising per timestep band, at noise draws fixed by a seed: ε-MSE and x0-MSE per pixel, the latter
  against the image variance (the x0-MSE of predicting the mean image). The average training ε-loss is
  dominated by the easy, low-noise timesteps, so it says little about global structure; x0-MSE at
  t = 500 below half the variance does.
- The same x0 score for the best *linear* denoiser (Wiener filter on the principal components of the
  training images): a trunk that does not beat it has learned no structure beyond the pixel covariance.
  And for the *memorising* denoiser (posterior mean over the training images): what a model that only
  recalls its training set reaches. On 32 px BreastMNIST / BUSI both sit near 0.55–0.62 at t = 500,
  where the noise variance is ~12× the signal's: the 0.5 target lies beyond what either reference reaches.
- Linear probes: logistic regression fitted on training images' features, AUC on validation, per
  trunk layer × timestep, on token-mean features and on a 2×2 spatial pooling of the patch tokens,
  beside the same probe on raw pixels. A trunk whose probes do not beat the pixel probe adds nothing
  a linear model on the image lacks.
- A grid of class-conditional DDIM samples.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dcube_edge.runtimes.files import atomic_path

from .diffusion import Schedule, sample_ddim
from .metrics import auc
from .uvit import UViT

BANDS = (10, 100, 250, 500, 750)  # timesteps of the denoising figures
PROBE_T = (10, 100, 250, 500)  # timesteps of the probes
PROBE_C = (0.01, 0.1, 1.0)  # L2 strengths tried per probe (best on validation, same grid for pixels)


def _scored(images: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The images every denoiser is scored on, their fixed noise draws and their variance about the mean image."""
    x0_all = torch.from_numpy(images)
    noise_all = torch.randn(x0_all.shape, generator=torch.Generator().manual_seed(seed))
    return x0_all, noise_all, float((x0_all - x0_all.mean(0)).pow(2).mean())


@torch.no_grad()
def denoising(trunk: UViT, schedule: Schedule, images: np.ndarray, seed: int = 0, batch: int = 128) -> dict:
    """ε-MSE and x0-MSE per pixel at each of :data:`BANDS`, unconditional trunk, fixed noise."""
    trunk.eval()
    dev = next(trunk.parameters()).device
    x0_all, noise_all, variance = _scored(images, seed)
    eps_mse: list[float] = []
    x0_mse: list[float] = []
    for t_val in BANDS:
        eps_se = x0_se = 0.0
        for i in range(0, len(images), batch):
            x0, noise = x0_all[i:i + batch].to(dev), noise_all[i:i + batch].to(dev)
            t = torch.full((len(x0),), t_val, dtype=torch.long, device=dev)
            x_t = schedule.q_sample(x0, t, noise)
            eps, _ = trunk(x_t, t)
            ab = float(schedule.alphas_bar[t_val])
            x0_hat = (x_t - (1 - ab) ** 0.5 * eps.float()) / ab ** 0.5
            eps_se += float((eps.float() - noise).pow(2).sum())
            x0_se += float((x0_hat.clamp(-1, 1) - x0).pow(2).sum())
        eps_mse.append(eps_se / x0_all.numel())
        x0_mse.append(x0_se / x0_all.numel())
    return {"timesteps": list(BANDS), "eps_mse": eps_mse, "x0_mse": x0_mse, "image_variance": variance}


# The closed-form denoisers every trunk is compared with: (trunk.json key stem, label in logs and figures).
REFERENCES = (("linear", "linear"), ("memorised", "memorising"))


def _reference(schedule: Schedule, images: np.ndarray, seed: int,
               estimate: Callable[[float, np.ndarray], np.ndarray]) -> dict:
    """x0-MSE per pixel at :data:`BANDS` of a closed-form denoiser ``estimate(ᾱ, flattened x_t) -> flattened x0``,
    scored as :func:`denoising` scores the trunk (same noise draws, clamped to [-1, 1])."""
    x0_all, noise_all, variance = _scored(images, seed)
    n = len(images)
    x0 = x0_all.reshape(n, -1).double().numpy()
    x0_mse: list[float] = []
    for t_val in BANDS:
        ab = float(schedule.alphas_bar[t_val])
        x_t = schedule.q_sample(x0_all, torch.full((n,), t_val, dtype=torch.long), noise_all)
        x0_hat = estimate(ab, x_t.reshape(n, -1).double().numpy())
        x0_mse.append(float(((np.clip(x0_hat, -1, 1) - x0) ** 2).mean()))
    return {"timesteps": list(BANDS), "x0_mse": x0_mse, "image_variance": variance}


def linear_reference(schedule: Schedule, train_images: np.ndarray, images: np.ndarray, seed: int = 0) -> dict:
    """The linear MMSE (Wiener) estimate of x0 from x_t, with the mean and principal components of
    ``train_images``, scored by :func:`_reference`."""
    flat = train_images.reshape(len(train_images), -1).astype(np.float64)
    mu = flat.mean(0)
    _, sv, vt = np.linalg.svd(flat - mu, full_matrices=False)  # components beyond the sample count get gain 0
    evals = sv ** 2 / max(1, len(flat) - 1)

    def estimate(ab: float, y: np.ndarray) -> np.ndarray:
        y = y / ab ** 0.5 - mu  # x0 − μ plus noise of variance (1−ᾱ)/ᾱ
        return mu + ((y @ vt.T) * (evals / (evals + (1 - ab) / ab))) @ vt

    return _reference(schedule, images, seed, estimate)


def memorised_reference(schedule: Schedule, train_images: np.ndarray, images: np.ndarray, seed: int = 0,
                        chunk: int = 64) -> dict:
    """The posterior mean of x0 under the empirical distribution of ``train_images``, scored by :func:`_reference`:
    the ideal denoiser of a model that has memorised its training set (a softmax-weighted average of training
    images). Beside the linear reference it brackets what the data allow: a trunk needs structure beyond both."""
    from scipy.special import softmax

    bank = train_images.reshape(len(train_images), -1).astype(np.float64)
    bank_sq = (bank ** 2).sum(1)

    def estimate(ab: float, y: np.ndarray) -> np.ndarray:  # ‖y − √ᾱ x_k‖² up to a per-row constant, as logits
        return np.concatenate([softmax((ab ** 0.5 * y[i:i + chunk] @ bank.T - 0.5 * ab * bank_sq) / (1 - ab), axis=1)
                               @ bank for i in range(0, len(y), chunk)])

    return {**_reference(schedule, images, seed, estimate), "train_images": len(bank)}


@torch.no_grad()
def trunk_features(trunk: UViT, images: np.ndarray, t_val: int, batch: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer: (token-mean (N, w), 2×2 spatially pooled patch tokens (N, 4w)), unconditional trunk."""
    trunk.eval()
    dev = next(trunk.parameters()).device
    g = trunk.grid
    per_layer: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(trunk.num_layers)]
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(dev)
        t = torch.full((len(x),), t_val, dtype=torch.long, device=dev)
        for k, h in enumerate(trunk.layers(x, t)):
            h = h.float()
            spatial = h[:, 1:].transpose(1, 2).unflatten(2, (g, g))
            pooled = torch.nn.functional.adaptive_avg_pool2d(spatial, 2).flatten(1)
            per_layer[k].append((h.mean(1).cpu().numpy(), pooled.cpu().numpy()))
    return [(np.concatenate([a for a, _ in chunks]), np.concatenate([b for _, b in chunks])) for chunks in per_layer]


def probe_auc(f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray, y_val: np.ndarray) -> float:
    """Validation AUC of a standardised L2 logistic regression, best of :data:`PROBE_C`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(f_train)
    a, b = scaler.transform(f_train), scaler.transform(f_val)
    best = float("nan")
    for c in PROBE_C:
        clf = LogisticRegression(C=c, max_iter=500).fit(a, y_train)
        score = auc(y_val, clf.predict_proba(b))
        if np.isfinite(score) and not score <= best:
            best = score
    return best


def probes(trunk: UViT, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
           timesteps: tuple[int, ...] = PROBE_T, spatial: bool = True) -> dict:
    """Probe AUC per timestep × layer (token-mean, and spatial if asked), and the pixel probe."""
    out: dict = {"timesteps": list(timesteps), "token_mean": [], "spatial": [] if spatial else None,
                 "pixels": probe_auc(x_train.reshape(len(x_train), -1), y_train, x_val.reshape(len(x_val), -1), y_val)}
    for t_val in timesteps:
        tr, va = trunk_features(trunk, x_train, t_val), trunk_features(trunk, x_val, t_val)
        out["token_mean"].append([probe_auc(a[0], y_train, b[0], y_val) for a, b in zip(tr, va)])
        if spatial:
            out["spatial"].append([probe_auc(a[1], y_train, b[1], y_val) for a, b in zip(tr, va)])
    return out


def best_probe(p: dict) -> dict:
    """The best trunk probe (kind, timestep, layer, AUC) and its margin over the pixel probe."""
    auc = -1.0
    best: dict[str, object] = {"auc": auc}
    for kind in ("token_mean", "spatial"):
        for t_val, row in zip(p["timesteps"], p.get(kind) or []):
            for layer, value in enumerate(row):
                if np.isfinite(value) and value > auc:
                    auc = value
                    best = {"kind": kind, "timestep": t_val, "layer": layer, "auc": value}
    best["over_pixels"] = auc - p["pixels"]
    return best


def summary(check: dict) -> str:
    """One log line for a step-1 checkpoint: what the issue's yardsticks read at this step."""
    den, probes_ = check["denoising"], check["probes"]
    i = list(den["timesteps"]).index(500)
    best = best_probe(probes_)
    versus = "".join(f", {label} denoiser {ref['x0_mse'][i] / ref['image_variance']:.2f}"
                     for key, label in REFERENCES if (ref := check.get(f"{key}_reference")))
    return (f"checkpoint step {check['step']}: x0-MSE/variance at t=500 {den['x0_mse'][i] / den['image_variance']:.2f} "
            f"(eps-MSE {den['eps_mse'][i]:.4f}{versus}); best probe AUC {best['auc']:.3f} (layer {best['layer']}, "
            f"t={best['timestep']}, {best['kind']}) vs pixel probe {probes_['pixels']:.3f}")


@torch.no_grad()
def samples(trunk: UViT, schedule: Schedule, num_classes: int, per_class: int = 4, seed: int = 0,
            steps: int = 50) -> np.ndarray:
    """(classes, per_class, H, W) class-conditional DDIM samples in [-1, 1]."""
    trunk.eval()
    dev = next(trunk.parameters()).device
    size = trunk.grid * trunk.patch_size
    out = []
    for k in range(num_classes):
        y = torch.full((per_class,), k, dtype=torch.long, device=dev)
        g = torch.Generator().manual_seed(seed * 1000 + k)
        x = sample_ddim(lambda x, t: trunk(x.to(dev), t.to(dev), y)[0].float().cpu(),  # noqa: B023
                        schedule, (per_class, 1, size, size), g, steps=steps)
        out.append(x[:, 0].numpy())
    return np.stack(out)


def plot(report: dict, path: Path, title: str) -> None:
    """trunk.png: denoising vs step, final probes per layer, samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = report["checkpoints"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6), dpi=110)
    steps = [c["step"] for c in checks]
    for j, t_val in enumerate(BANDS):
        axes[0].plot(steps, [c["denoising"]["eps_mse"][j] for c in checks], marker=".", label=f"t={t_val}")
        axes[1].plot(steps, [c["denoising"]["x0_mse"][j] / c["denoising"]["image_variance"] for c in checks],
                     marker=".", label=f"t={t_val}")
    axes[0].set(title="ε-MSE per pixel (validation)", xlabel="step", yscale="log")
    axes[1].axhline(0.5, ls="--", c="k", lw=1)
    for (key, label), style in zip(REFERENCES, (":", "-.")):
        if ref := checks[-1].get(f"{key}_reference"):
            j = list(ref["timesteps"]).index(500)
            axes[1].axhline(ref["x0_mse"][j] / ref["image_variance"], ls=style, c="C3", lw=1.5,
                            label=f"{label} denoiser, t=500")
    axes[1].set(title="x0-MSE / image variance (validation)", xlabel="step", yscale="log")
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    final = checks[-1]["probes"]
    for kind, style in (("token_mean", "-"), ("spatial", ":")):
        for t_val, row in zip(final["timesteps"], final.get(kind) or []):
            axes[2].plot(range(len(row)), row, style, marker=".", label=f"{kind} t={t_val}")
    axes[2].axhline(final["pixels"], c="k", lw=1.5, label="pixel probe")
    axes[2].set(title=f"linear probe AUC (step {checks[-1]['step']})", xlabel="trunk layer")
    axes[2].legend(fontsize=6, ncol=2)
    grid = report.get("samples")
    if grid is not None:
        g = np.asarray(grid)
        k, n, h, w = g.shape
        axes[3].imshow(g.transpose(0, 2, 1, 3).reshape(k * h, n * w), cmap="gray", vmin=-1, vmax=1)
        axes[3].set(title="DDIM samples (one row per class)", xticks=[], yticks=[])
    else:
        axes[3].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
