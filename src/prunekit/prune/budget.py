"""Turn item scores and a target sparsity into the items to remove, always by count.

A `Unit` is one ranking (a tensor's elements, a family of groups, a layer's ranks). Items are
removed lowest score first; ties go to the lower index (a stable sort), so the result never
depends on a threshold and equal scores can never over-prune. Items already pruned carry a score
of -inf, so they are always counted first and masks only grow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import PrunekitError
from prunekit.prune.schedules import round_half_up


@dataclass
class Unit:
    """One ranking of n items pruned as wholes.

    Attributes:
        name: what it covers (a tensor or family name).
        scores (Tensor[n]): item scores; -inf marks items already pruned.
        item_size: parameters per item.
        dense_size: parameters of the dense structure the unit stands for (a global budget is a
            fraction of these).
        layer_remove: items to remove at sparsity s under a per-layer budget.
        write: marks removed items (Tensor[n], bool) as dropped in a dict name -> keep-mask.
        min_keep: items that must survive (factorized layers keep rank >= 1).
    """

    name: str
    scores: Tensor
    item_size: int
    dense_size: int
    layer_remove: Callable[[float], int]
    write: Callable[[Tensor, dict[str, Tensor]], None]
    min_keep: int = 0


def lowest(scores: Tensor, k: int) -> Tensor:
    """Return a bool mask of the k lowest scores (ties: lower index first).

    Args:
        scores (Tensor[n]): the scores.
        k: how many to select, clipped to [0, n].

    Returns:
        Tensor[n], bool, True on the k selected items.
    """
    n = scores.numel()
    k = max(0, min(int(k), n))
    if k == 0 or k == n:
        return torch.full((n,), k == n, dtype=torch.bool, device=scores.device)
    # O(n) instead of a full sort: everything below the k-th value, then the lowest-index ties.
    kth = torch.kthvalue(scores, k).values
    out = scores < kth
    ties = torch.nonzero(scores == kth).flatten()
    out[ties[: k - int(out.sum())]] = True
    return out


def _check_finite(u: Unit) -> None:
    if torch.isnan(u.scores).any():
        raise PrunekitError(
            f"pruning scores of {u.name} contain NaN: the weights or gradients diverged; "
            "lower the learning rate or check the loss before pruning"
        )


def select_layer(units: list[Unit], sparsity: float) -> list[Tensor]:
    """Remove `unit.layer_remove(sparsity)` items from every unit (a per-layer budget)."""
    out = []
    for u in units:
        _check_finite(u)
        out.append(lowest(u.scores, u.layer_remove(sparsity)))
    return out


def select_threshold(units: list[Unit], thresholds: Mapping[str, float]) -> list[Tensor]:
    """Remove, in every unit, the items scoring <= its threshold (counted, then taken by rank)."""
    out = []
    for u in units:
        _check_finite(u)
        out.append(lowest(u.scores, int((u.scores <= thresholds[u.name]).sum())))
    return out


def _keep_floor(u: Unit, removed: Tensor) -> Tensor:
    """Give back the best removed items of `u` (not already pruned) until min_keep survive."""
    missing = u.min_keep - int((~removed).sum())
    if missing <= 0:
        return removed
    candidates = removed & torch.isfinite(u.scores)
    scores = torch.where(candidates, u.scores, torch.full_like(u.scores, float("-inf")))
    back = torch.sort(scores, descending=True, stable=True).indices[:missing]
    removed = removed.clone()
    removed[back[candidates[back]]] = False
    return removed


def select_global(units: list[Unit], sparsity: float) -> list[Tensor]:
    """Rank the items of all units together and remove the lowest until the budget is met.

    The budget removes round(sparsity * D) of the D dense parameters of all units (exactly that
    many elements for unstructured pruning; for groups and ranks, the shortest prefix of the
    ranking whose sizes reach it).

    Memory: the scores of all units are concatenated (4 bytes per item in float32) and sorted
    (8 more bytes per item for the int64 order), so about 12 bytes per scored item on top of the
    scores themselves: ~240 MB for a 20M-parameter unstructured scope. Per-layer budgets sort one
    unit at a time instead.
    """
    for u in units:
        _check_finite(u)
    dense = sum(u.dense_size for u in units)
    stored = sum(u.scores.numel() * u.item_size for u in units)
    to_remove = stored - dense + round_half_up(sparsity * dense)
    device = units[0].scores.device
    scores = torch.cat([u.scores.to(device, torch.float32) for u in units])  # (N,)
    order = torch.sort(scores, stable=True).indices  # (N,)
    if all(u.item_size == 1 for u in units):
        count = max(0, to_remove)
    else:
        sizes = torch.cat(
            [torch.full((u.scores.numel(),), u.item_size, device=device) for u in units]
        )
        cum = sizes[order].cumsum(0)  # (N,)
        count = 0 if to_remove <= 0 else int(torch.searchsorted(cum, to_remove)) + 1
    removed_all = torch.zeros_like(scores, dtype=torch.bool)
    removed_all[order[:count]] = True
    out, start = [], 0
    for u in units:
        n = u.scores.numel()
        out.append(_keep_floor(u, removed_all[start : start + n]))
        start += n
    return out
