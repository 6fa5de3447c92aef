"""Pruning criteria: turn a weight and its accumulated statistics into importance scores.

A criterion never decides what to prune; it only scores (seed 004 §3.1). Weights of Linear-like
layers are passed as (out, in); statistics are whatever the criterion accumulated (`stats` is a
per-tensor dict of tensors that the pruner stores, checkpoints and all-reduces under
torch.distributed).

- `magnitude`: |w| (eq. 1).
- `taylor`: (g * w)^2, the first-order Taylor estimate of (L(w) - L(w | w_i = 0))^2 (eq. 2-3),
  averaged over the gradients seen since the last pruning step (keeps one float32 copy of every
  scope tensor).
- `activation` (Wanda): |w_ij| * ||x_j||_2 over the input tokens of an nn.Linear. Tensors with
  no inputs to observe (embeddings, RNN weights, factorized diagonals) fall back to |w|.

Register a new criterion with `@register_criterion("name")` on a `Criterion` subclass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from prunekit.errors import PrunekitError

Stats = dict[str, Tensor]


def _acc_dtype(t: Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)


def _scalar(like: Tensor) -> Tensor:
    return torch.zeros((), dtype=_acc_dtype(like), device=like.device)


class Criterion:
    """Base class: score a weight, optionally from statistics accumulated over batches.

    Subclasses set `needs_grad` (accumulate from `.grad` after backward) and/or `needs_inputs`
    (accumulate the inputs of Linear layers in forward pre-hooks) and override `score`.
    """

    name: ClassVar[str] = ""
    needs_grad: ClassVar[bool] = False
    needs_inputs: ClassVar[bool] = False
    missing_data: ClassVar[str] = ""

    def init_stats(self, weight: Tensor, n_inputs: int | None) -> Stats:
        """Return zeroed statistics for one tensor (every rank holds the same keys and shapes).

        Args:
            weight (Tensor[out, in] or Tensor[*shape]): the stored weight.
            n_inputs: input features of its Linear layer, or None if its inputs are not observed.
        """
        return {}

    def accumulate_grad(self, weight: Tensor, grad: Tensor, stats: Stats) -> None:
        """Fold one gradient into `stats`.

        Args:
            weight (Tensor[*shape]): the stored weight.
            grad (Tensor[*shape]): its gradient.
            stats: the tensor's statistics, updated in place.
        """

    def accumulate_inputs(self, x: Tensor, stats: Stats) -> None:
        """Fold one batch of layer inputs x (Tensor[..., in]) into `stats`."""

    def has_data(self, stats: Stats) -> bool:
        """Return whether `stats` holds what `score` needs (else `missing_data` is raised)."""
        return True

    def score(self, weight: Tensor, stats: Stats) -> Tensor:
        """Return importance scores (same shape as `weight`; larger = more important).

        Args:
            weight (Tensor[out, in] or Tensor[*shape]): the stored weight.
            stats: what this criterion accumulated for the tensor.

        Returns:
            Tensor[*weight.shape] of non-negative scores.
        """
        raise NotImplementedError


_CRITERIA: dict[str, type[Criterion]] = {}


def register_criterion(name: str) -> Callable[[type[Criterion]], type[Criterion]]:
    """Decorator: make a `Criterion` subclass available as `PruneConfig(criterion=name)`."""

    def decorate(cls: type[Criterion]) -> type[Criterion]:
        cls.name = name
        _CRITERIA[name] = cls
        return cls

    return decorate


def criterion_names() -> list[str]:
    """Return the registered criterion names, sorted."""
    return sorted(_CRITERIA)


def make_criterion(name: str) -> Criterion:
    """Instantiate the criterion registered as `name`.

    Raises:
        PrunekitError: no criterion of that name.
    """
    if name not in _CRITERIA:
        known = ", ".join(repr(n) for n in criterion_names())
        raise PrunekitError(
            f"criterion={name!r} is unknown: choose one of {known} "
            "(or add one with @register_criterion)"
        )
    return _CRITERIA[name]()


@register_criterion("magnitude")
class Magnitude(Criterion):
    """|w| (seed 004 eq. 1)."""

    def score(self, weight: Tensor, stats: Stats) -> Tensor:
        """Return |weight|."""
        return weight.abs()


@register_criterion("taylor")
class Taylor(Criterion):
    """(g * w)^2 averaged over the accumulated gradients (seed 004 eq. 3)."""

    needs_grad = True
    missing_data = (
        "criterion=taylor needs gradients: call pruner.accumulate() after loss.backward() "
        "on calibration batches"
    )

    def init_stats(self, weight: Tensor, n_inputs: int | None) -> Stats:
        """Return a zero running sum of (g * w)^2 (one copy of the weight) and a zero count."""
        return {
            "taylor_sum": torch.zeros_like(weight, dtype=_acc_dtype(weight)),
            "taylor_count": _scalar(weight),
        }

    def accumulate_grad(self, weight: Tensor, grad: Tensor, stats: Stats) -> None:
        """Add (grad * weight)^2 to the running sum and count one more gradient."""
        dt = stats["taylor_sum"].dtype
        stats["taylor_sum"] += (grad.to(dt) * weight.to(dt)).square()
        stats["taylor_count"] += 1

    def has_data(self, stats: Stats) -> bool:
        """Return whether at least one gradient was accumulated."""
        return bool(stats["taylor_count"] > 0)

    def score(self, weight: Tensor, stats: Stats) -> Tensor:
        """Return sum((g * w)^2) / count."""
        return stats["taylor_sum"] / stats["taylor_count"]


@register_criterion("activation")
class Activation(Criterion):
    """|w_ij| * ||x_j||_2 over the observed input tokens (Wanda; Sun et al. 2023).

    Only Linear-like layers have inputs to observe; other tensors (embeddings, RNN weights,
    factorized diagonals) are scored by |w|, which is what Wanda's score reduces to when every
    input feature has the same norm.
    """

    needs_inputs = True
    missing_data = (
        "criterion=activation needs layer inputs: run forward passes on calibration batches "
        "inside `with pruner.calibration():` (or in training mode) before pruning"
    )

    def init_stats(self, weight: Tensor, n_inputs: int | None) -> Stats:
        """Return a zero per-input-feature sum of squares and token count (Linear layers only)."""
        if n_inputs is None:
            return {}
        dt = _acc_dtype(weight)
        return {
            "act_sq": torch.zeros(n_inputs, dtype=dt, device=weight.device),
            "act_tokens": _scalar(weight),
        }

    def accumulate_inputs(self, x: Tensor, stats: Stats) -> None:
        """Add the per-feature sum of squares of x (Tensor[..., in]) and its token count."""
        x2 = x.detach().reshape(-1, x.shape[-1]).to(stats["act_sq"].dtype)  # (N, in)
        stats["act_sq"] += x2.square().sum(dim=0)
        stats["act_tokens"] += x2.shape[0]

    def has_data(self, stats: Stats) -> bool:
        """Return whether inputs were seen (always true for tensors without observed inputs)."""
        return "act_tokens" not in stats or bool(stats["act_tokens"] > 0)

    def score(self, weight: Tensor, stats: Stats) -> Tensor:
        """Return |w| * sqrt(sum_tokens x^2) per input column, or |w| without input statistics."""
        if "act_sq" not in stats:
            return weight.abs()
        return weight.abs() * stats["act_sq"].sqrt().to(weight.dtype)  # (out, in) * (in,)
