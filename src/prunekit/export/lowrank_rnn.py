"""Compact forms of factored (W = U V, `prunekit.lowrank`) Linears and LSTM / GRU layers.

`convert_lowrank(model)` (step 2 of `compact`) replaces, in place:

- a factored nn.Linear by a `LowRankLinear` (two thin matmuls, x -> V x -> U (V x)) when
  r (m + n) < m n, else by an nn.Linear holding U V;
- an nn.LSTM / nn.GRU with factored gate stacks by a `LinearRNN` whose per-layer `ih[l]` and
  `hh[l]` are `LowRankLinear` (cheaper factors) or `DenseLinear`: the input projection of all
  time steps then runs as two thin matmuls at once and the recurrent one as two thin matmuls
  per step. A bidirectional RNN becomes a `BiLinearRNN` (`prunekit.export.bidir_rnn`) of such
  layers. Unsupported RNNs (an LSTM with proj_size, no biases) keep their dense product U V.

The compact layers compose with the rest of `compact`: zeros still go to CSR where timed faster,
and `int8=True` makes LowRankLinear factors int8 (`Int8LowRankLinear`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.export.bidir_rnn import BiLinearRNN
from prunekit.export.layers import DenseLinear, LowRankLinear
from prunekit.export.linear_rnn import LinearRNN
from prunekit.export.shrink import set_module
from prunekit.lowrank.factor import factored, factors, get_lowrank, unfactor_one

Record = dict[str, Any]


def has_lowrank(model: nn.Module) -> bool:
    """Whether any matrix of `model` is factored (W = U V)."""
    return bool(factored(model))


def _gate_layer(rnn: nn.RNNBase, attr: str, bias: torch.Tensor) -> tuple[nn.Module, Record]:
    """The compact layer of one gate stack `rnn.<attr>` (G*H, in) and what was chosen."""
    if get_lowrank(rnn, attr) is None:
        w = getattr(rnn, attr).detach()
        return DenseLinear(w, bias), {"shape": list(w.shape), "as": "dense", "factored": False}
    U, V = (f.detach() for f in factors(rnn, attr))
    m, r, n = U.shape[0], U.shape[1], V.shape[1]
    record = {"shape": [m, n], "rank": r, "factored": True}
    if r * (m + n) < m * n:
        return LowRankLinear(U, V, bias), {**record, "as": "lowrank"}
    return DenseLinear(U @ V, bias), {**record, "as": "dense"}


def _direction(rnn: nn.RNNBase, suffix: str) -> tuple[list, list, dict[str, Record]]:
    ih, hh, records = [], [], {}
    for layer in range(rnn.num_layers):
        for kind, out in (("ih", ih), ("hh", hh)):
            attr = f"weight_{kind}_l{layer}{suffix}"
            bias = getattr(rnn, f"bias_{kind}_l{layer}{suffix}").detach()
            module, records[attr] = _gate_layer(rnn, attr, bias)
            out.append(module)
    return ih, hh, records


def lowrank_rnn(rnn: nn.LSTM | nn.GRU) -> tuple[nn.Module, dict[str, Record]]:
    """A `LinearRNN` (or `BiLinearRNN`) running `rnn` with its factored gate stacks as two thin
    matmuls; the records say, per matrix, its shape, rank and the layout chosen."""
    ih, hh, records = _direction(rnn, "")
    kw = {"batch_first": rnn.batch_first, "dropout": rnn.dropout}
    fwd = LinearRNN(rnn.mode, rnn.input_size, rnn.hidden_size, ih, hh, **kw)
    if not rnn.bidirectional:
        return fwd, records
    ih_r, hh_r, rec_r = _direction(rnn, "_reverse")
    bwd = LinearRNN(rnn.mode, 2 * rnn.hidden_size, rnn.hidden_size, ih_r, hh_r, **kw)
    return BiLinearRNN.from_directions(fwd, bwd, rnn.input_size), {**records, **rec_r}


def _linear(m: nn.Linear) -> tuple[nn.Module, Record]:
    U, V = (f.detach() for f in factors(m, "weight"))
    a, r, b = U.shape[0], U.shape[1], V.shape[1]
    bias = None if m.bias is None else m.bias.detach()
    record: Record = {"kind": "linear", "shape": [a, b], "rank": r}
    if r * (a + b) < a * b:
        return LowRankLinear(U, V, bias), {**record, "as": "lowrank", "params": r * (a + b)}
    unfactor_one(m, "weight")
    return m, {**record, "as": "dense", "params": a * b}


def _supported(rnn: nn.RNNBase) -> bool:
    return isinstance(rnn, nn.LSTM | nn.GRU) and rnn.bias and not getattr(rnn, "proj_size", 0)


def convert_lowrank(model: nn.Module) -> list[Record]:
    """Replace every factored Linear / LSTM / GRU of `model` by its compact form (in place).

    Returns:
        One record per converted module: {"module", "kind" ("linear" / "rnn"), "as", ...}.
    """
    records: list[Record] = []
    owners = {id(mat.module): mat.module for mat in factored(model)}
    names = {id(m): n for n, m in model.named_modules()}
    for key, m in owners.items():
        name = names[key]
        if isinstance(m, nn.Linear):
            new, record = _linear(m)
        elif isinstance(m, nn.RNNBase) and _supported(m):
            new, matrices = lowrank_rnn(m)
            record = {"kind": "rnn", "as": type(new).__name__, "matrices": matrices}
        else:  # no compact form: keep the module with its dense products
            for attr in list(m.parametrizations):
                unfactor_one(m, attr)
            new, record = m, {"kind": type(m).__name__, "as": "dense (no compact form)"}
        if new is not m:
            set_module(model, name, new)
        records.append({"module": name, **record})
    return records
