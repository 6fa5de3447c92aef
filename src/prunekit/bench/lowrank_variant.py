"""A factored (W = U V) compact copy of a model for the latency benchmarks (seed 000's export)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from prunekit.export.compact import compact
from prunekit.lowrank.factor import factorize, select_matrices
from prunekit.lowrank.svd import fraction_plan
from prunekit.prune import ScopeConfig
from prunekit.prune.size import count_params

LOWRANK_SCOPE = ScopeConfig(module_types=("Linear", "LSTM", "GRU"))


def lowrank_variant(
    base: nn.Module, fraction: float, opts: Mapping[str, Any], scope: ScopeConfig = LOWRANK_SCOPE
) -> tuple[nn.Module, dict[str, Any]]:
    """`compact` of a copy of `base` with every scope matrix (Linears and LSTM / GRU gate stacks)
    at the rank keeping `fraction` of its parameters (truncated SVD of its weights).

    Returns:
        (compact fp32 copy, {"method", "size", "ranks", "params", "scope_params", "summary"}).
    """
    model = copy.deepcopy(base)
    matrices = select_matrices(model, scope)
    plan = fraction_plan(matrices, fraction)
    factorize(model, plan)
    fp32, manifest = compact(model, **opts)
    info = {
        "method": "lowrank (Linears and gate stacks)", "size": fraction, "ranks": plan,
        "params": count_params(model), "summary": manifest["summary"],
        "scope_params": sum(m.shape[0] * m.shape[1] for m in matrices),
    }  # fmt: skip
    return fp32, info
