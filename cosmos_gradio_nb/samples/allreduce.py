"""A model group that runs one all-reduce per request: is torch.distributed working here?

``cosmos-gradio-nb doctor`` starts it as a group of 2 ranks (NCCL on GPUs, gloo on
CPUs); it is also the smallest example of a model that joins the process group the
engine sets up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, as
torchrun does). Each rank adds ``rank + 1``; every rank must get
``world_size * (world_size + 1) / 2``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["AllReduceModel", "create_worker"]


def create_worker() -> AllReduceModel:
    return AllReduceModel()


class AllReduceModel:
    """Joins the group in its constructor (NCCL with CUDA, else gloo)."""

    def __init__(self) -> None:
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda:0" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.backend = "nccl" if cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=self.backend, init_method="env://")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        value = torch.tensor([float(self.rank + 1)], device=self.device)
        started = time.perf_counter()
        dist.all_reduce(value)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        if self.rank != 0:
            return {}
        return {
            "sum": float(value.item()),
            "expected": self.world_size * (self.world_size + 1) / 2,
            "backend": self.backend,
            "world_size": self.world_size,
            "device": str(self.device),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "all_reduce_seconds": seconds,
        }

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
