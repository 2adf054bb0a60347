"""DDPM maths, apart from the network: linear beta schedule, q-sample, the ε loss summed over pixels,
the margin contrastive loss, and two samplers (ancestral DDPM and deterministic DDIM)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from .config import Config


class Schedule:
    def __init__(self, cfg: Config):
        self.steps = cfg.diffusion_steps
        self.betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.diffusion_steps, dtype=torch.float64)
        self.alphas_bar = torch.cumprod(1.0 - self.betas, 0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_bar.to(x0.device)[t].float().view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def eps_loss(pred: torch.Tensor, noise: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error summed over pixels, mean over the batch (the reference's loss); optionally weighted per image."""
    err = (pred - noise).pow(2).flatten(1).sum(1)
    return (err * weight).mean() if weight is not None else err.mean()


def min_snr_weights(schedule: Schedule, gamma: float) -> torch.Tensor:
    """Per-timestep ε-loss weight min(SNR_t, γ) / SNR_t, SNR_t = ᾱ_t / (1 − ᾱ_t); all ones for γ = 0."""
    snr = schedule.alphas_bar / (1 - schedule.alphas_bar)
    if gamma <= 0:
        return torch.ones_like(snr, dtype=torch.float32)
    return (torch.clamp(snr, max=gamma) / snr).float()


def margin_contrastive(a: torch.Tensor, b: torch.Tensor, different: torch.Tensor, margin: float) -> torch.Tensor:
    """(1−y)·D + y·max(0, m − D) with D the mean squared distance of the flattened features.

    The reference squares the distance; we average it over elements instead of summing, so the
    margin m = 0.1 means the same at every model width (a summed D over 257·512 values never
    falls under 0.1 and the term would be inert)."""
    d = (a - b).pow(2).flatten(1).mean(1)
    y = different.float()
    return ((1 - y) * d + y * torch.clamp(margin - d, min=0)).mean()


EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample_ddpm(eps_fn: EpsFn, schedule: Schedule, shape: tuple[int, ...], generator: torch.Generator,
                progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Ancestral sampling over all steps (the reference's 999-step sampler)."""
    x = torch.randn(shape, generator=generator)
    betas, ab = schedule.betas, schedule.alphas_bar
    for i in reversed(range(schedule.steps)):
        t = torch.full((shape[0],), i, dtype=torch.long)
        eps = eps_fn(x, t).double()
        mean = (x.double() - betas[i] / (1 - ab[i]).sqrt() * eps) / (1 - betas[i]).sqrt()
        if i > 0:
            var = betas[i] * (1 - ab[i - 1]) / (1 - ab[i])
            mean = mean + var.sqrt() * torch.randn(shape, generator=generator, dtype=torch.float64)
        x = mean.float()
        if progress:
            progress(1)
    return x.clamp(-1, 1)


@torch.no_grad()
def sample_ddim(eps_fn: EpsFn, schedule: Schedule, shape: tuple[int, ...], generator: torch.Generator,
                steps: int = 50, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Deterministic DDIM (η = 0) on ``steps`` evenly spaced timesteps."""
    x = torch.randn(shape, generator=generator)
    ts = torch.linspace(schedule.steps - 1, 0, steps).round().long().tolist()
    ab = schedule.alphas_bar
    for i, t in enumerate(ts):
        eps = eps_fn(x, torch.full((shape[0],), t, dtype=torch.long)).double()
        x0 = ((x.double() - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()).clamp(-1, 1)
        ab_next = ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        x = (ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps).float()
        if progress:
            progress(1)
    return x.clamp(-1, 1)
