"""From-scratch baselines: the same architecture with narrower layers, sized to a parameter budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prunekit.errors import PrunekitError
from prunekit.eval.size import param_count
from prunekit.models.registry import build_model

# Width fields scaled per architecture, and the multiple each is rounded to.
_WIDTHS: dict[str, dict[str, str | int]] = {
    "transformer": {"d_model": "n_head", "d_ff": 8},
    "rnn": {"d_embed": 8, "d_hidden": 8},
}


def _scaled(config: Mapping[str, Any], factor: float) -> dict[str, Any]:
    out = dict(config)
    for key, multiple in _WIDTHS[config["arch"]].items():
        step = int(config[multiple]) if isinstance(multiple, str) else multiple
        out[key] = max(step, round(config[key] * factor / step) * step)
    if config["arch"] == "transformer" and config.get("d_head"):
        out["d_head"] = max(1, round(config["d_head"] * factor))
    return out


def scaled_config(config: Mapping[str, Any], target_params: int) -> dict[str, Any]:
    """Shrink the width fields of a model config (same layer arrangement) to about `target_params`.

    Transformer: d_model (a multiple of n_head), d_ff (and d_head if set) scale together; RNN:
    d_embed and d_hidden. Depth, vocabulary and the rest stay. The result is the largest found
    whose parameter count is <= target_params.

    Raises:
        PrunekitError: unknown arch, or a target below the smallest width the arch allows.
    """
    arch = config.get("arch")
    if arch not in _WIDTHS:
        raise PrunekitError(f"model.arch={arch!r} cannot be scaled: use one of {sorted(_WIDTHS)}")

    def count(factor: float) -> int:
        return param_count(build_model(_scaled(config, factor)))

    lo, hi = 0.0, 1.0
    if count(1e-6) > target_params:
        raise PrunekitError(
            f"target of {target_params:,} parameters is below the smallest {arch} of this shape "
            f"({count(1e-6):,}): choose a larger target"
        )
    for _ in range(30):  # bisection on the width factor
        mid = (lo + hi) / 2
        if count(mid) <= target_params:
            lo = mid
        else:
            hi = mid
    return _scaled(config, lo)
