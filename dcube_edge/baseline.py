"""Plain-CNN baselines trained in the same harness as D-Cube (same splits, preprocessing, optimiser,
flip augmentation and validation-based model selection), so every results table has a baseline
column measured here. A checkpoint at every epoch end (``state/baseline.pt``) lets an interrupted run resume
to the same weights."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dcube_edge.runtimes.files import write_json
from dcube_edge.runtimes.preprocess import PreprocessSpec

from . import distributed, rundir
from .config import Config
from .data import audit, discover, same_classes
from .loop import class_weights, on_device, optimizer_step, predict_logits, seed_all
from .metrics import classification_report, collapse_warning, macro_f1, softmax
from .operating_point import at_operating_point_report, selection_score
from .resnet import ARCHS, Baseline

__all__ = ["ARCHS", "Baseline", "train_baseline"]

STATE = Path("state") / "baseline.pt"


@dataclass(frozen=True)
class Best:
    """The epoch model selection keeps so far: its score, its number (0: none yet) and its weights."""
    score: float
    epoch: int
    state: dict[str, torch.Tensor]


def train_baseline(data: str | Path, out: str | Path, cfg: Config, report: Callable = lambda *a: None,
                   log: Callable[[str], None] = print, resume: bool = False) -> dict:
    """Train ``cfg.model`` on ``data`` into ``out``; ``resume`` continues from the last complete epoch's
    checkpoint (the caller settles the settings: :func:`dcube_edge.train.resume_config`)."""
    out = Path(out)
    seed_all(cfg.seed)
    ds = discover(data, cfg.val_fraction, cfg.split_seed)
    same_classes(cfg.classes, ds.classes, data)
    for problem in audit(ds):
        log(f"warning: {problem}")
    cfg = cfg.replace(classes=tuple(ds.classes), data_root=str(Path(data).resolve()), val_source=ds.val_source)
    spec = PreprocessSpec(cfg.image_size)
    x_train, x_val = ds.train.load(spec), ds.val.load(spec)
    dev = distributed.device()
    model = Baseline(cfg, len(cfg.classes)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ce = nn.CrossEntropyLoss(weight=on_device(class_weights(cfg, ds.train.labels), dev))
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(ds.train.labels)
    steps = max(1, -(-len(xt) // cfg.batch_size))
    epochs = cfg.epochs_classifier or max(1, -(-cfg.steps_classifier // steps))
    out.mkdir(parents=True, exist_ok=True)
    rundir.save_config(cfg, out)  # before the first epoch (bad input fails above): --resume continues with these
    best, t0 = Best(-1.0, 0, copy.deepcopy(model.state_dict())), time.perf_counter()
    history: list[dict] = []
    start = 0
    if resume and (state := rundir.load_state(out / STATE)):
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        history, start = list(state["history"]), int(state["epoch"])
        best = Best(float(state["best_score"]), int(state["best_epoch"]), state["best"])
    for epoch in range(start, epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for s in range(steps):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], xt[idx].flip(-1), xt[idx]).to(dev)
            loss = ce(model(x), yt[idx].to(dev))
            optimizer_step(opt, loss, "baseline", epoch)
            total += loss.item() / steps
            report("baseline", epoch * steps + s + 1, epochs * steps, {"epoch": epoch + 1, "loss": total})
        logits = predict_logits(model, x_val)
        score, at_op = selection_score(logits, ds.val.labels, len(cfg.classes))
        history.append({"epoch": epoch + 1, "loss": total, "val_score": score,
                        "val_macro_f1": macro_f1(ds.val.labels, softmax(logits)), **{f"val_{k}": v for k, v in at_op.items()}})
        if score > best.score:
            best = Best(score, epoch + 1, copy.deepcopy(model.state_dict()))
        rundir.save_state(out / STATE, model=model.state_dict(), opt=opt.state_dict(), epoch=epoch + 1,
                          history=history, best=best.state, best_score=best.score, best_epoch=best.epoch)
    model.load_state_dict(best.state)
    rundir.save_weights(model, out / rundir.BASELINE)
    logits = predict_logits(model, x_val)
    val = classification_report(ds.val.labels, softmax(logits), list(cfg.classes))
    if warning := collapse_warning(val):
        log(warning)
    metrics = {"validation": val, "validation_at_operating_point": at_operating_point_report(
                   logits, ds.val.labels, list(cfg.classes)), "best_epoch": best.epoch, "val_source": ds.val_source,
               "model": cfg.model,
               "seconds": {"baseline": round(time.perf_counter() - t0, 1)}, "history": {"baseline": history}}
    write_json(out / rundir.METRICS, metrics)
    return metrics
