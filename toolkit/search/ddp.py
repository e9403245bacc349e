"""Data-parallel search over devices: each rank owns a share of the training devices; per-device
hypernetwork gradients are gathered on every rank and every rank runs the same MGD step.

Launch with ``torchrun --nproc_per_node N`` (gloo on CPU); a single process needs nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    owned: bool = False   # True when this context initialised the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> list[int]:
        """The device indices this rank computes (round robin)."""
        return [i for i in range(n) if i % self.world == self.rank]

    def gather_rows(self, rows: dict[int, torch.Tensor], n: int, dim: int) -> torch.Tensor:
        """``[n, dim]`` with row i from the rank that owns device i (exact: others add zeros)."""
        out = torch.zeros(n, dim, dtype=torch.float32)
        for i, row in rows.items():
            out[i] = row.reshape(-1).to(torch.float32)
        if self.world > 1:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place."""
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.broadcast(tensor, src=0)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


def init_from_env() -> DistContext:
    """A context from torchrun's environment (``WORLD_SIZE``, ``RANK``); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    owned = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        owned = True
    return DistContext(rank=dist.get_rank(), world=dist.get_world_size(), owned=owned)


__all__ = ["DistContext", "init_from_env"]
