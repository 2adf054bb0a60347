"""The run directory (docs/architecture.md, the engine contract): config, weights (safetensors), selection,
metrics, resume state."""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dcube_edge.runtimes.files import atomic_path, sha256, write_json

from . import __version__
from .config import CONFIG, Config, RunError, load_config
from .head import DCube
from .resnet import Baseline

DIFFUSION, CLASSIFIER, SELECTION, METRICS, BASELINE = (
    "diffusion.safetensors", "classifier.safetensors", "selection.json", "metrics.json", "baseline.safetensors")


def versions() -> dict[str, str]:
    return {"dcube_edge": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def save_weights(module: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def load_weights(module: torch.nn.Module, path: Path) -> None:
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise RunError(f"{path} is not a valid safetensors file ({e})") from None
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RunError(f"{path} does not match the model in config.json "
                       f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")


def save_config(cfg: Config, run: Path) -> None:
    write_json(run / CONFIG, {**cfg.to_dict(), "versions": versions()})


@dataclass(frozen=True)
class Run:
    """A run directory read once: its path and config. Code below the CLI is handed this, not a path it would
    read again; the weights are read when :meth:`model` is called."""

    path: Path
    config: Config

    @classmethod
    def load(cls, path: str | Path) -> Run:
        return cls(Path(path), load_config(path))

    @classmethod
    def of(cls, run: str | Path | Run) -> Run:
        return run if isinstance(run, Run) else cls.load(run)

    def model(self) -> DCube | Baseline:
        """The trained inference model, in eval mode."""
        return load_model(self)[1]

    def hashes(self) -> dict[str, str]:
        """sha256 of the files that decide the model (config and weights), by file name."""
        names = (CONFIG, DIFFUSION, CLASSIFIER) if self.config.model == "dcube" else (CONFIG, BASELINE)
        return {name: sha256(self.path / name) for name in names}


def load_model(run: str | Path | Run) -> tuple[Config, DCube | Baseline]:
    """The trained inference model of a run, in eval mode."""
    cfg, run = (run.config, run.path) if isinstance(run, Run) else (load_config(run), Path(run))
    names, command = ((DIFFUSION, CLASSIFIER), "train") if cfg.model == "dcube" else ((BASELINE,), "baseline")
    for name in names:
        if not (run / name).is_file():
            raise RunError(f"{run} has no {name}: training did not finish (resume with `dcube-edge {command} ... --resume`)")
    if cfg.model != "dcube":
        baseline = Baseline(cfg, len(cfg.classes))
        load_weights(baseline, run / BASELINE)
        return cfg, baseline.eval()
    model = DCube(cfg, len(cfg.classes))
    load_weights(model.trunk, run / DIFFUSION)
    load_weights(model.head, run / CLASSIFIER)
    return cfg, model.eval()


def save_state(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict | None:
    """A training checkpoint: tensors and plain containers only (``weights_only``), never objects."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for foreign objects, RuntimeError for corrupt archives
        raise RunError(f"{path} is not a dcube-edge checkpoint of plain tensors ({type(e).__name__}); "
                              "refusing to load it: delete it to restart that step") from None
