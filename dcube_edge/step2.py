"""Step 2: the frozen trunk fed the clean image at the fixed timesteps (features cached once), the fused head
trained with cross-entropy plus the flip-consistency loss, the model picked on validation at every epoch end
(AUC among epochs whose default operating point finds every class: :func:`.operating_point.selection_score`);
and validation the reference's way (a random t per image) where a run asks for it."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import distributed, rundir
from .config import Config
from .head import DCube
from .loop import class_weights, on_device, optimizer_step, predict_logits
from .metrics import auc, macro_f1, softmax
from .operating_point import selection_score
from .step1 import Report


def classifier_steps_per_epoch(cfg: Config, n_train: int) -> int:
    return max(1, -(-n_train // cfg.batch_size))

@torch.no_grad()
def _cached_features(model: DCube, images: np.ndarray, batch: int = 64) -> list[torch.Tensor]:
    """Selected trunk features (T, N, tokens, width) per layer: the trunk is frozen and t is fixed."""
    per_layer: list[list[torch.Tensor]] = [[] for _ in model.layers_used]
    t = model.timesteps.shape[0]
    dev = next(model.parameters()).device
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(dev)
        for k, f in enumerate(model.features(x)):
            per_layer[k].append(f.unflatten(0, (t, x.shape[0])).cpu())  # the cache lives in host memory
    return [torch.cat(p, dim=1) for p in per_layer]

def random_timesteps(cfg: Config, n: int, generator: torch.Generator) -> torch.Tensor:
    """The reference's random t: one per image, uniform in [1, max(timesteps)], as a (1, n) tensor."""
    return torch.randint(1, max(cfg.timesteps) + 1, (1, n), generator=generator)

@torch.no_grad()
def predict_logits_random_t(model: DCube, images: np.ndarray, cfg: Config, batch: int = 64) -> np.ndarray:
    """Validation as the reference does it: a random t per image (seeded, so reruns agree)."""
    model.eval()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + 90_000)
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(dev)
        feats = model.features(x, random_timesteps(cfg, len(x), g).to(dev))
        out.append(model.head(feats, x, 1).float().cpu().numpy())
    return np.concatenate(out)

def validation_logits(model: DCube, images: np.ndarray, cfg: Config) -> np.ndarray:
    return predict_logits_random_t(model, images, cfg) if cfg.random_t else predict_logits(model, images)

def train_classifier(cfg: Config, model: DCube, x_train: np.ndarray, y_train: np.ndarray,
                     x_val: np.ndarray, y_val: np.ndarray, state_path: Path, report: Report,
                     resume: bool) -> tuple[dict, list[dict]]:
    dev = distributed.device()
    model.to(dev)
    for p in model.trunk.parameters():
        p.requires_grad_(False)
    model.trunk.eval()
    opt = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    best: dict = {"auc": -1.0, "epoch": 0, "state": copy.deepcopy(model.head.state_dict())}
    start = 0
    if resume and (state := rundir.load_state(state_path)):
        model.head.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        history, start = list(state["history"]), int(state["epoch"])
        best = {"auc": float(state["best_auc"]), "epoch": int(state["best_epoch"]), "state": state["best"]}
    both = np.ascontiguousarray(np.concatenate([x_train, x_train[..., ::-1]]))
    feats = None if cfg.random_t else _cached_features(model, both)
    n, t = len(x_train), model.timesteps.shape[0]
    x_t, y_t = torch.from_numpy(both), torch.from_numpy(y_train)
    steps = classifier_steps_per_epoch(cfg, n)
    epochs = max(1, -(-cfg.steps_classifier // steps))  # validation (model selection) at every epoch end
    ce = nn.CrossEntropyLoss(weight=on_device(class_weights(cfg, y_train), dev))
    for epoch in range(start, epochs):
        model.head.train()
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + 50_000 + epoch)
        torch.manual_seed(cfg.seed * 100_003 + 70_000 + epoch)  # dropout
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for s in range(steps):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            idx2 = torch.cat([idx, idx + n])  # image and its horizontal flip
            x = x_t[idx2].to(dev)
            if feats is None:  # random t per image: the trunk runs every step
                with torch.no_grad():
                    f = model.features(x, random_timesteps(cfg, len(idx2), g).to(dev))
                logits = model.head(f, x, 1)
            else:
                logits = model.head([layer[:, idx2].flatten(0, 1).to(dev) for layer in feats], x, t)
            plain, flipped = logits[: len(idx)], logits[len(idx):]
            loss = ce(plain, y_t[idx].to(dev)) + cfg.consistency_weight * (plain - flipped).pow(2).mean()
            if (guide_logits := model.head.last_guide_logits) is not None:  # a guide classifier, in training
                loss = loss + cfg.guide_loss_weight * ce(guide_logits[: len(idx)], y_t[idx].to(dev))
            optimizer_step(opt, loss, "classifier", epoch)
            total += loss.item() / steps
            report("classifier", epoch * steps + s + 1, epochs * steps, {"epoch": epoch + 1, "loss": total})
        logits = validation_logits(model, x_val, cfg)
        probs = softmax(logits)
        val_auc, val_acc = auc(y_val, probs), float((probs.argmax(1) == y_val).mean())
        score, at_op = selection_score(logits, y_val, probs.shape[1])
        history.append({"epoch": epoch + 1, "loss": total, "val_auc": val_auc, "val_accuracy": val_acc,
                        "val_macro_f1": macro_f1(y_val, probs), "selection_score": score,
                        **{f"val_{k}": v for k, v in at_op.items()}})
        if score > best["auc"]:
            best = {"auc": score, "epoch": epoch + 1, "state": copy.deepcopy(model.head.state_dict())}
        rundir.save_state(state_path, model=model.head.state_dict(), opt=opt.state_dict(), epoch=epoch + 1,
                    history=history, best=best["state"], best_auc=best["auc"], best_epoch=best["epoch"])
    model.head.load_state_dict(best["state"])
    return best, history
