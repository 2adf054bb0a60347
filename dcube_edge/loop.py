"""The pieces every training loop here shares (D-Cube's two steps, the CNN baselines, the torch runner):
seeding, class-weighted cross-entropy, a guarded optimizer step, batched inference. A leaf module."""
from __future__ import annotations

import random

import numpy as np
import torch

from dcube_edge.errors import Diverged

from .config import Config


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    dev = next(model.parameters()).device
    return np.concatenate([model(torch.from_numpy(images[i:i + batch]).to(dev)).float().cpu().numpy()
                           for i in range(0, len(images), batch)])


def class_weights(cfg: Config, labels: np.ndarray) -> torch.Tensor | None:
    """Cross-entropy class weights: inverse class frequency (mean 1) for "balanced", else None."""
    if cfg.class_weights == "none":
        return None
    counts = np.bincount(labels, minlength=len(cfg.classes)).astype(np.float64)
    return torch.tensor(len(labels) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)


def on_device(t: torch.Tensor | None, dev: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(dev)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, what: str, epoch: int) -> None:
    """One plain step; a non-finite loss stops training before it touches the weights."""
    if not torch.isfinite(loss):
        raise Diverged(f"{what} loss became {loss.item()} at epoch {epoch + 1}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
