"""Helpers for the pruner's statistics: distributed averaging and magnitude percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor


def distributed_world() -> int:
    """Return the torch.distributed world size, or 1 when it is not initialized."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@torch.no_grad()
def all_reduce_mean_(tensors: Iterable[Tensor]) -> None:
    """Average `tensors` in place over all ranks (a no-op without torch.distributed).

    Every rank must pass tensors of the same shapes in the same order; the pruner guarantees it by
    creating every statistic up front.
    """
    world = distributed_world()
    if world == 1:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(world)


@torch.no_grad()
def abs_percentile(t: Tensor, p: float) -> float:
    """Return the p-th percentile of |t| (linear interpolation, like numpy.percentile).

    Args:
        t (Tensor[*shape]): any tensor.
        p: the percentile, in [0, 100].

    Returns:
        The percentile as a Python float.
    """
    v = t.detach().abs().reshape(-1).to(torch.float64).sort().values  # (N,)
    pos = p / 100.0 * (v.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))
