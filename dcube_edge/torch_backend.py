"""The ``torch`` backend's runner: the PyTorch model itself behind the runner contract (its build half is
:mod:`dcube_edge.export.pytorch`), added through the registry alone.

It is the reference the other backends are measured against, so ``evaluate`` on a run dir, export
parity and ``bench``'s PyTorch rows all run it the same way (:func:`dcube_edge.loop.predict_logits`).
As an engine (``export --backend torch``) it is the run's weights (one safetensors file) and config,
for a workstation that has PyTorch and wants no conversion; ``bf16`` is CPU autocast, offered where
the CPU has bf16 units. Needs the ``train`` extra."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.errors import BackendUnavailable, RunnerNotActive, UserError
from dcube_edge.runtimes.base import Runner
from dcube_edge.runtimes.manifest import MANIFEST, Manifest
from dcube_edge.runtimes.preprocess import PreprocessSpec
from dcube_edge.runtimes.record import EngineRecord, GraphSection, PrecisionSection
from dcube_edge.runtimes.sections import Provenance, RunRef
from dcube_edge.runtimes.spec import GraphSpec

if TYPE_CHECKING:
    import torch

    from dcube_edge import rundir

WEIGHTS, CONFIG = "model.safetensors", "config.json"


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, load: Callable[[], torch.nn.Module], spec: GraphSpec | None = None, precision: str = "fp32",
                 device: str = "cpu", threads: int | None = None, compile: bool = False):
        super().__init__(spec)
        if precision not in ("fp32", "bf16", "fp16"):
            raise UserError(f"the torch runner runs fp32, bf16 (autocast) or fp16 (CUDA), not {precision!r}")
        self.load, self.precision, self.device, self.threads, self.compile = load, precision, device, threads, compile
        self.model: torch.nn.Module | None = None  # loaded by activate

    @classmethod
    def from_manifest(cls, manifest: Manifest, threads: int | None = None, device: str | None = None,
                      profile: bool = False) -> TorchRunner:
        def load() -> torch.nn.Module:
            from dcube_edge import rundir
            from dcube_edge.head import DCube, FixedGraph
            from dcube_edge.resnet import Baseline, BaselineGraph

            cfg = rundir.load_config(manifest.dir)
            if cfg.model != "dcube":
                baseline = Baseline(cfg, len(cfg.classes))
                rundir.load_weights(baseline, manifest.dir / WEIGHTS)
                return BaselineGraph(baseline.eval())
            graph = manifest.record.graph
            model = DCube(cfg, len(cfg.classes), graph.selected_layers)
            rundir.load_weights(model, manifest.dir / WEIGHTS)
            return FixedGraph(model.eval(), graph.timesteps, graph.truncated_after_layer,
                              last_layer=len(manifest.spec.outputs) > 1)

        return cls(load, manifest.spec, manifest.precision, device or "cpu", threads)

    @classmethod
    def from_run(cls, run: str | Path | rundir.Run, precision: str = "fp32", device: str = "cpu",
                 threads: int | None = None, compile: bool = False, max_batch: int = 64) -> tuple[TorchRunner, Manifest]:
        """A run (D-Cube or baseline) as a runner, with an in-memory manifest for :class:`Classifier`."""
        from dcube_edge import rundir

        run = rundir.Run.of(run)
        cfg = run.config
        spec = GraphSpec.for_classifier(cfg.image_size, len(cfg.classes), max_batch)
        record = EngineRecord("torch", rundir.CONFIG, GraphSection(spec, tuple(cfg.classes)),
                              PreprocessSpec(cfg.image_size), PrecisionSection(precision, {"all": precision}),
                              provenance=Provenance(run=RunRef(str(run.path))))
        manifest = Manifest(run.path / MANIFEST, record)  # in memory: a run directory has no manifest.json
        return cls(run.model, spec, precision, device, threads, compile), manifest

    def activate_impl(self) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("the torch backend needs PyTorch: pip install 'dcube-edge[train]'") from None
        if self.threads:
            torch.set_num_threads(self.threads)
        model = self.load().to(self.device).eval()
        if self.compile:
            model.compile()  # torch.compile of the module's call, in place: still the module
        self.model = model

    def _model(self) -> torch.nn.Module:
        """The model of an active runner (``activate`` loaded it; ``deactivate`` dropped it)."""
        if self.model is None:
            raise RunnerNotActive(f"{self.name} runner is not active: use it as a context manager or call activate()")
        return self.model

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from dcube_edge.loop import predict_logits

        (name, x), = feed.items()
        names = [t.name for t in self.spec.outputs] if self.spec else ["logits"]
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        model = self._model()
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            if len(names) == 1:
                return {names[0]: predict_logits(model, x.astype(np.float32), batch=max(1, len(x)))}
            outs = model(torch.from_numpy(x).to(self.device))
            return {n: o.float().cpu().numpy() for n, o in zip(names, outs)}

    def synchronize(self) -> None:
        """Wait for queued GPU work (for timing)."""
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def deactivate_impl(self) -> None:
        self.model = None
