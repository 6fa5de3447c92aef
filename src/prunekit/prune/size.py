"""Model sizes: effective parameter counts, and the sparsity that reaches a target size.

`count_params(model)` counts what a compact export keeps: masked entries are excluded and a
factorized layer at kept rank k counts k (a + b) + k (U, V and d). `sparsity_for_size` inverts it,
turning "prune this 4M model to 1M parameters" into the scope sparsity for a PruneConfig.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune.factorized import FACTORIZED_TYPES
from prunekit.prune.groups import find_groups
from prunekit.prune.masks import masks_by_param, original
from prunekit.prune.methods import Structured, make_method
from prunekit.prune.schedules import factorized_rank_fraction, round_half_up
from prunekit.prune.scope import ScopeConfig, Target, resolve_scope


def count_params(model: nn.Module) -> int:
    """Return the effective parameter count of `model`.

    Tied tensors count once; masked entries are excluded; factorized layers count k (a + b + 1)
    at kept rank k (shared factors once). Biases of removed structured units still count (export
    removes them).
    """
    masks = masks_by_param(model)
    seen: set[int] = set()
    total = 0
    for m in model.modules():
        if isinstance(m, FACTORIZED_TYPES):
            d = original(m, "d")
            if id(d) not in seen:
                seen.update((id(m.U), id(d), id(m.V)))
                total += m.kept_rank * (m.U.shape[0] + m.V.shape[1] + 1)
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += int(masks[id(p)].mask.sum()) if id(p) in masks else p.numel()
    return total


CountFn = Callable[[float], int]


def _structured_count(model: nn.Module, targets: list[Target], method: Structured) -> CountFn:
    """Count after removing round(s * n) groups of every family (which ones does not matter)."""
    plan = find_groups(model, targets, method.granularity, method.consumers)
    tensors = {t.name: t.param for t in targets + plan.dependents}
    outside = sum(t.param.numel() for t in plan.dependents)  # already counted in `rest`

    def count(s: float) -> int:
        keep = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in tensors.items()}
        for spec in plan.groups:
            n = spec.n_groups
            removed = torch.arange(n) < round_half_up(s * n)
            for m in spec.members:
                keep[m.param].index_fill_(m.dim, m.index_tensor()[removed].reshape(-1), False)
        return sum(int(k.sum()) for k in keep.values()) - outside

    return count


def _count_fn(model: nn.Module, targets: list[Target], method: Any, budget: str) -> CountFn:
    """Map a scope sparsity to the model's parameter count after pruning."""
    total = count_params(model)
    scope = sum(t.param.numel() for t in targets)
    rest = total - scope
    if budget == "global":
        return lambda s: rest + scope - round_half_up(s * scope)
    if method.name == "factorized":
        shapes = [(t.param.shape[0], t.param[0].numel()) for t in targets]  # convs: (out, in*k)

        def kept(s: float, a: int, b: int) -> int:
            r = min(a, b)
            return r - min(r - 1, round_half_up(factorized_rank_fraction(s, a, b) * r))

        return lambda s: rest + sum(kept(s, a, b) * (a + b + 1) for a, b in shapes)
    if isinstance(method, Structured):
        inner = _structured_count(model, targets, method)
        return lambda s: rest + inner(s)
    return lambda s: (
        rest + sum(n - round_half_up(s * n) for n in (t.param.numel() for t in targets))
    )


def sparsity_for_size(
    model: nn.Module,
    target_params: int,
    scope: ScopeConfig | None = None,
    *,
    method: str = "unstructured",
    method_args: Mapping[str, Any] | None = None,
    budget: str = "layer",
) -> float:
    """Return the smallest scope sparsity whose pruned `model` has <= `target_params` parameters.

    For method="factorized" the count is that of the factorized model at the ranks eq. 5 gives
    (the pruner converts the returned sparsity with `factorized_rank_fraction` per layer).
    Global budgets are exact for unstructured pruning and within one group/rank otherwise.

    Args:
        model: the dense model (not yet factorized or masked).
        target_params: the wanted effective parameter count (see `count_params`).
        scope: the pruning scope (default: ScopeConfig()).
        method: the pruning method name.
        method_args: the method's arguments.
        budget: "layer" or "global".

    Returns:
        A sparsity in [0, 1) for OneShot(sparsity=...) or Cubic(s_f=...); 0.0 if the model is
        already small enough.

    Raises:
        PrunekitError: target_params not a positive integer, or below the smallest reachable size.
    """
    if isinstance(target_params, bool) or not isinstance(target_params, int) or target_params < 1:
        raise PrunekitError(
            f"target_params={target_params!r} must be a positive integer number of parameters"
        )
    targets = resolve_scope(model, scope or ScopeConfig())
    meth = make_method(method, method_args)
    count = _count_fn(model, targets, meth, budget)
    if count(0.0) <= target_params:
        return 0.0
    s_max = math.nextafter(1.0, 0.0)
    smallest = count(s_max)
    if smallest > target_params:
        why = "the parameters outside the pruning scope: biases, norms, excluded layers"
        if meth.name == "factorized":
            why = "factorized layers keep rank >= 1, plus " + why
        raise PrunekitError(
            f"target_params={target_params} is unreachable: the smallest model this scope and "
            f"method reach has {smallest} parameters ({why}); ask for >= {smallest} or widen "
            "the scope"
        )
    lo, hi = 0.0, s_max
    for _ in range(64):
        mid = (lo + hi) / 2
        if count(mid) <= target_params:
            hi = mid
        else:
            lo = mid
    rounded = math.ceil(hi * 1e6) / 1e6
    return rounded if rounded < 1.0 and count(rounded) <= target_params else hi
