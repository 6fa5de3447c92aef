"""Dynamic int8 for compact models, layer by layer, with a measured choice where it matters.

`quantize_compact(model, policy=...)` replaces each layer by an int8 candidate:

- DenseLinear / nn.Linear -> `Int8Linear`; LowRankLinear -> `Int8LowRankLinear` (rank kept);
- SparseLinear -> kept in fp32 CSR or made a dense `Int8Linear` (zeros kept), whichever is faster;
- nn.LSTM / nn.GRU -> torch's dynamic int8 LSTM / GRU;
- LinearRNN (CSR gate matrices) -> its gate layers in int8 / CSR, or torch's int8 LSTM / GRU of
  its weights, whichever is faster; with low-rank gate stacks, always its gate layers (int8
  factors: multiplying them out into torch's int8 LSTM / GRU would undo the compression).

policy="all" quantizes every layer that has an int8 form (timing only the either-or cases
above); policy="fastest" also times the fp32 layer against its int8 form at `batch_size` rows and
keeps fp32 where int8 is not faster (thin low-rank factors at batch 1 often are not: quantizing
the activations costs more than the int8 matmul saves). Every timed decision is recorded.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.export.choose import outgrows_cache, timed_call
from prunekit.export.layers import (
    DenseLinear,
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    SparseLinear,
)
from prunekit.export.linear_rnn import CompactRNNLM, LinearRNN
from prunekit.export.quantize import _int8_rnn, quantize_int8
from prunekit.export.replace import replace_modules
from prunekit.export.shrink import is_plain_linear
from prunekit.export.timing import check_positive_int, median_us, num_threads
from prunekit.models.rnn_lm import RNNLM

Int8Policy = Literal["all", "fastest"]


def _candidates(m: nn.Module) -> dict[str, nn.Module] | None:
    """fp32 / int8 forms of a layer ("fp32" first), or None for layers without an int8 form."""
    if isinstance(m, SparseLinear):
        return {"csr": m, "int8": Int8Linear.from_linear(m)}
    if isinstance(m, DenseLinear) or is_plain_linear(m):
        return {"fp32": m, "int8": Int8Linear.from_linear(m)}
    if isinstance(m, LowRankLinear):
        return {"fp32": m, "int8": Int8LowRankLinear.from_low_rank(m)}
    if isinstance(m, LinearRNN):
        gates = quantize_int8(m, sparse="fastest")
        if any(isinstance(g, LowRankLinear) for g in [*m.ih, *m.hh]):
            return {"fp32": m, "int8_gates": gates}  # keep the ranks: no dense int8 LSTM / GRU
        return {"fp32": m, "int8_gates": gates, "int8": _int8_rnn(m.to_dense_rnn())}
    if isinstance(m, nn.LSTM | nn.GRU):
        q = _int8_rnn(m)
        return {"fp32": m} if q is None else {"fp32": m, "int8": q}
    return None


def _example(m: nn.Module, batch_size: int) -> Tensor:
    g = torch.Generator().manual_seed(0)
    if isinstance(m, LinearRNN | nn.RNNBase):
        shape = (batch_size, 1, m.input_size) if m.batch_first else (1, batch_size, m.input_size)
        return torch.randn(shape, generator=g)
    return torch.randn(batch_size, m.in_features, generator=g)


def quantize_compact(
    model: nn.Module,
    *,
    policy: Int8Policy = "all",
    batch_size: int = 1,
    threads: int = 1,
    repeats: int = 20,
    cold: bool | None = None,
) -> tuple[nn.Module, dict[str, dict[str, Any]]]:
    """Dynamic int8 copy (eval mode) of a compact fp32 model; `model` is not modified.

    Args:
        model: the output of `compact` (or any model of DenseLinear / LowRankLinear /
            SparseLinear / nn.Linear / LSTM / GRU / LinearRNN layers).
        policy: "all" or "fastest" (see the module docstring).
        batch_size: rows (sequences) per call of the timings.
        threads: torch threads of the timings.
        repeats: timing samples per candidate.
        cold: time with the weights out of cache (`prunekit.export.choose`); None: when the
            model outgrows the cache.

    Returns:
        (int8 copy, {layer name: {"kind": chosen candidate, "us": {candidate: median µs}}} for
        the timed layers).

    Raises:
        PrunekitError: an unknown policy or a bad count.
    """
    if policy not in ("all", "fastest"):
        raise PrunekitError(f"int8 policy={policy!r} is unknown: use 'all' or 'fastest'")
    check_positive_int("batch_size", batch_size)
    check_positive_int("repeats", repeats)
    new = copy.deepcopy(model).eval()
    cold = outgrows_cache(model) if cold is None else cold
    records: dict[str, dict[str, Any]] = {}

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        cands = _candidates(m)
        if cands is None:
            return None
        cands = {k: v for k, v in cands.items() if v is not None}
        if policy == "all" and "fp32" in cands and len(cands) > 1:
            del cands["fp32"]
        if len(cands) == 1:
            return next(iter(cands.values()))
        x = _example(m, batch_size)
        with num_threads(threads):
            fns = {k: timed_call(c, x, cold=cold) for k, c in cands.items()}
            t = median_us(fns, repeats=repeats)
        pick = min(t, key=t.get)
        records[name] = {"kind": pick, "us": t}
        return cands[pick]

    with torch.no_grad():
        replace_modules(new, convert)
    if type(new) is RNNLM:  # its init_state needs fp32 nn.RNNBase parameters
        new.__class__ = CompactRNNLM
    return new.requires_grad_(False), records
