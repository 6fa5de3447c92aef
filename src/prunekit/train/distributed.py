"""Process-group set-up for `torchrun` (gloo on CPU); a single process needs nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place: rank and world size (1 when not launched by torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world() -> World:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1), else return a 1-process world."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def all_reduce_sum(values: list[float], world: World) -> list[float]:
    """Sum a few floats over all ranks (identity in a 1-process world)."""
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def close_world(world: World) -> None:
    """Leave the process group."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written a checkpoint)."""
    if world.size > 1:
        dist.barrier()
