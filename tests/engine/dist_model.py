"""A real torch.distributed model: each rank contributes, rank 0 writes the sum."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


class SumModel:
    def __init__(self) -> None:
        dist.init_process_group(backend="gloo")  # from the environment, as under torchrun
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        print(f"rank {self.rank}/{self.world} joined", flush=True)

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("fail_rank") == self.rank:
            raise ValueError(f"rank {self.rank} refuses")
        if args.get("kill_rank") == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)
        value = torch.tensor([float(args.get("x", 1)) * (self.rank + 1)])
        dist.all_reduce(value)
        if self.rank == 0:
            out = Path(args["output_dir"]) / "sum.json"
            out.write_text(json.dumps({"sum": value.item()}))
            return {"sum": value.item(), "world": self.world}
        return {}

    def close(self) -> None:
        dist.destroy_process_group()


def create_worker() -> SumModel:
    return SumModel()
