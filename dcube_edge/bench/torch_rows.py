"""PyTorch rows of a bench: the run's model through the torch backend's runner (eager, autocast,
torch.compile, a CUDA graph on GPUs), the baseline every engine row is compared with."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dcube_edge.runtimes import isa
from dcube_edge.runtimes.timing import time_fn

from .rows import inputs

if TYPE_CHECKING:
    import torch

    from dcube_edge.rundir import Run  # torch: only for type checkers here


def torch_rows(run: Run, batch_sizes: tuple[int, ...], iterations: int, warmup: int,
               threads: int | None, compile: bool = False, device: str = "cpu") -> list[dict]:
    """The run's PyTorch model through the torch backend's runner: eager fp32, bf16 autocast on CPUs with
    bf16 units, fp16 autocast and a CUDA graph on GPUs; on request torch.compile of each of those precisions
    (on the AMX Xeon's paper preset, compiled bf16 autocast ran about 1.5× eager bf16 autocast: the fastest
    PyTorch row, and so the one engines are measured against)."""
    from dcube_edge.torch_backend import TorchRunner

    cfg = run.config
    variants = [("torch-eager", "fp32", False)]  # (row's backend, precision, compiled)
    if device == "cpu" and isa.has_bf16():
        variants.append(("torch-autocast", "bf16", False))
    if device == "cuda":
        variants.append(("torch-autocast", "fp16", False))
    if compile:
        variants += [("torch-compile", precision, True) for _, precision, _ in variants]
    rows: list[dict] = []
    for backend, precision, compiled in variants:
        runner, _ = TorchRunner.from_run(run, precision=precision, device=device, threads=threads,
                                         max_batch=max(batch_sizes), compile=compiled)
        try:
            with runner:
                for b in batch_sizes:
                    feed = {"images": inputs(b, cfg.image_size)}

                    def call(feed: dict[str, np.ndarray] = feed, runner: TorchRunner = runner) -> None:
                        runner.infer(feed)
                        runner.synchronize()

                    rows.append({"engine": str(run.path), "backend": backend, "precision": precision, "batch": b,
                                 "reference": True,
                                 "timesteps": len(cfg.timesteps), **time_fn(call, iterations, warmup)})
        except Exception as e:  # noqa: BLE001 — torch.compile fails lazily on first call, and by platform
            rows.append({"engine": str(run.path), "backend": backend, "precision": precision, "batch": batch_sizes[0],
                         "reference": True,
                         "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"})
    if device == "cuda":
        import torch

        model = run.model().to(device)
        for b in batch_sizes:
            x = torch.from_numpy(inputs(b, cfg.image_size)).to(device)
            with torch.inference_mode():
                replay = cuda_graph(model, x)

                def replayed(replay: Callable[[], object] = replay) -> None:
                    replay()
                    torch.cuda.synchronize()

                rows.append({"engine": str(run.path), "backend": "torch-cudagraph", "precision": "fp32", "batch": b,
                             "reference": True,
                             "timesteps": len(cfg.timesteps), **time_fn(replayed, iterations, warmup)})
    return rows


def cuda_graph(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Capture one forward pass at this batch shape as a CUDA graph; the returned call replays it."""
    import torch

    static = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up allocations outside the capture
            model(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(static)
    return graph.replay
