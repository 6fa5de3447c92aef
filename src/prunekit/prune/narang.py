"""Narang et al. 2017 around the `NarangRamp` schedule: q from a trained dense model, the paper's
default iterations, and the q each pruned tensor uses.

    q = narang_q(trained_dense, scope)                    # {"recurrent": ..., "linear": ...}
    ramp = paper_ramp(total_steps, epoch_steps, q=q)      # start at epoch 2, ramp 25 %, end 50 %
    Pruner(fresh_model, PruneConfig(schedule=ramp, scope=scope)).attach()   # first training

Layer types: "recurrent" (every weight of an LSTM / GRU / RNN: the paper's recurrent layers,
input-to-hidden included), "linear" (Linear and Conv1D weights) and "embedding".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune.schedules import NarangRamp
from prunekit.prune.scope import ScopeConfig, Target, resolve_scope
from prunekit.prune.stats import abs_percentile

LAYER_TYPES = {"rnn": "recurrent", "linear": "linear", "conv1d": "linear", "embedding": "embedding"}


def layer_type(target: Target) -> str:
    """ "recurrent", "linear" or "embedding": the paper's layer type of a pruning target."""
    return LAYER_TYPES.get(target.kind, target.kind)


def narang_q(
    dense: nn.Module, scope: ScopeConfig | None = None, *, percentile: float = 90.0,
    per: str = "type",
) -> dict[str, float]:  # fmt: skip
    """q values for `NarangRamp(q=...)` from a trained dense model.

    Args:
        dense: the trained dense model (same architecture as the one to prune).
        scope: the pruning scope (default: prunekit's default scope).
        percentile: which percentile of |w| (the paper: 90).
        per: "type" (one q per layer type over all its tensors, the paper's choice) or "tensor"
            (one q per tensor, as Distiller's example schedules).

    Returns:
        {layer type: q} or {tensor name: q}.

    Raises:
        PrunekitError: an unknown `per` or a bad scope.
    """
    if per not in ("type", "tensor"):
        raise PrunekitError(f"per={per!r} must be 'type' or 'tensor'")
    targets = resolve_scope(dense, scope or ScopeConfig())
    if per == "tensor":
        return {t.name: abs_percentile(t.param, percentile) for t in targets}
    pooled: dict[str, list[torch.Tensor]] = {}
    for t in targets:
        pooled.setdefault(layer_type(t), []).append(t.param.detach().reshape(-1))
    return {k: abs_percentile(torch.cat(v), percentile) for k, v in pooled.items()}


def target_q(targets: Sequence[Target], schedule: NarangRamp) -> dict[str, float]:
    """The q of every target: `schedule.q[name]`, else `schedule.q[layer type]`, else (no q
    given) the `q_percentile` of the target's current weights.

    Raises:
        PrunekitError: `schedule.q` covers neither a target's name nor its type.
    """
    if schedule.q is None:
        return {t.name: abs_percentile(t.param, schedule.q_percentile) for t in targets}
    out = {}
    for t in targets:
        kind = layer_type(t)
        if t.name in schedule.q:
            out[t.name] = schedule.q[t.name]
        elif kind in schedule.q:
            out[t.name] = schedule.q[kind]
        else:
            raise PrunekitError(
                f"NarangRamp.q has no value for {t.name} (layer type {kind!r}): add "
                f"q[{kind!r}] or q[{t.name!r}] (prunekit.prune.narang.narang_q computes them "
                "from a trained dense model)"
            )
    return out


def paper_ramp(
    total_steps: int, epoch_steps: int, *, start: int | None = None, ramp: int | None = None,
    end: int | None = None, freq: int | None = None, slope_mult: float = 1.5,
    q_percentile: float = 90.0,
    q: dict[str, float] | None = None,
) -> NarangRamp:  # fmt: skip
    """`NarangRamp` with the paper's heuristics for what is not given: start at the beginning of
    the second epoch, ramp at 25 % and end at 50 % of training, freq 100 iterations (lowered to
    a quarter of end - start on runs too short for it).

    Raises:
        PrunekitError: iterations that do not fit (e.g. start >= end), see `NarangRamp`.
    """
    end = end if end is not None else total_steps // 2
    start = start if start is not None else min(epoch_steps, max(0, end // 4))
    ramp = ramp if ramp is not None else max(start, min(end, total_steps // 4))
    if freq is None:
        freq = 100 if end - start > 100 else max(1, (end - start) // 4)
    return NarangRamp(
        start=start, ramp=ramp, end=end, freq=freq, slope_mult=slope_mult,
        q_percentile=q_percentile, q=q,
    )  # fmt: skip
