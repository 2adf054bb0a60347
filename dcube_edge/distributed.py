"""Multi-process training with DDP under ``torchrun`` (gloo on CPU, NCCL on GPUs).

Step 1 (the diffusion trunk, the expensive step) runs data-parallel: every rank draws the same global
batch from the same seeded generators and trains on its own slice of the pairs, and DDP averages the
gradients, so the result equals single-process training up to floating-point noise when the pairs per
batch divide by the world size. Step 2 and every write happen on rank 0 only: the head has BatchNorm,
whose per-rank statistics would differ from one process's, and SyncBatchNorm needs CUDA."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean(values: dict[str, float]) -> dict[str, float]:
    """Average scalars over ranks (for logging)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / world_size()).tolist()))


def device() -> torch.device:
    """This rank's device: its GPU under torchrun with CUDA, else the first GPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """DDP around ``model`` when several processes train, the model itself otherwise."""
    if world_size() == 1:
        return model
    dev = next(model.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
