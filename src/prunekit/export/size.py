"""Size of a compact model, counting what `prunekit.eval.size` cannot see: packed int8 weights.

torch's dynamic-quantized modules keep their weights in packed C++ objects that are not tensors
of the `state_dict` (a tuple or a ScriptObject), so `size_report` would count only their
bias-free leftovers. Here each packed weight adds its int8 entries (1 byte each), one fp32 scale
and one int32 zero point per quantization channel (per row, or one per tensor) and its fp32 bias.
Everything else (fp32 tensors, SparseLinear's values and int32 indices) is counted as in
`prunekit.eval.size`.
"""

from __future__ import annotations

import torch
import torch.ao.nn.quantized.dynamic as qd
from torch import Tensor, nn
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase as DynamicRNNBase

from prunekit.eval.size import size_report


def _qweight_stats(w: Tensor) -> tuple[int, int, int]:
    """(entries, nonzero entries, bytes) of a quantized weight tensor incl. scales/zero points."""
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        channels = w.q_per_channel_scales().numel()
    else:
        channels = 1
    nonzero = int(torch.count_nonzero(w.int_repr()))
    return w.numel(), nonzero, w.numel() + 8 * channels


def _fp_stats(t: Tensor | None) -> tuple[int, int, int]:
    if t is None:
        return 0, 0, 0
    return t.numel(), int(torch.count_nonzero(t)), t.numel() * t.element_size()


def _packed_tensors(m: nn.Module) -> list[tuple[Tensor | None, bool]]:
    """(tensor, is_quantized_weight) pairs held in `m`'s packed params, or [] for other modules."""
    if isinstance(m, qd.Linear):
        w, b = m._weight_bias()
        return [(w, True), (b, False)]
    if isinstance(m, DynamicRNNBase):
        wb = m._weight_bias()
        out = [(w, w.is_quantized) for w in wb["weight"].values()]
        return out + [(b, False) for b in wb["bias"].values()]
    return []


def packed_size(model: nn.Module) -> dict[str, int]:
    """{"params", "nonzero_params", "size_bytes"} of the packed (int8) weights in `model` only."""
    total = {"params": 0, "nonzero_params": 0, "size_bytes": 0}
    for m in model.modules():
        for t, quantized in _packed_tensors(m):
            if t is None:
                continue
            n, nz, b = _qweight_stats(t) if quantized else _fp_stats(t)
            total["params"] += n
            total["nonzero_params"] += nz
            total["size_bytes"] += b
    return total


def compact_size_report(model: nn.Module) -> dict[str, int]:
    """`size_report(model)` plus the packed int8 weights it cannot see (same keys)."""
    report = size_report(model)
    packed = packed_size(model)
    return {k: report[k] + packed[k] for k in report}
