"""Physically remove pruned structures: attention heads, FFN units, LSTM/GRU hidden units, rows/cols.

Everything here edits a plain (finalized) fp32 model in place and keeps its function exactly:

- a unit is removed when nothing reads it: the consumer's columns of an FFN unit (`fc_out`) or a
  head (`out_proj`) are zero, or for an RNN unit its recurrent column in `weight_hh` and the
  columns that read it in the next layer (`weight_ih_l{k+1}`, both directions) or, after the last
  layer, in the consumer Linear (`lm_head`, `proj`, ... or `consumers={rnn: linear}`);
- for prunekit's own `FeedForward` / `CausalSelfAttention`, a unit whose producer rows are zero
  (fc_in row j; the value rows of head h) outputs a constant, which is folded into the consumer's
  bias before the unit is removed (softmax weights sum to 1, so a head's output is then b_v);
- at least one unit of each family stays (an all-removed family keeps unit 0 as it was: exact);
- an LSTM/GRU keeps one hidden size for all layers and directions: families that kept fewer units
  are padded with removed (all-zero, unread) units up to the largest count, which is still exact;
- any other Linear with all-zero rows or columns becomes a `SlicedLinear` (same input and output
  width) when what remains of it is mostly dense.

Each function returns JSON-able records (module, kind, n, kept indices) for the export manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from prunekit.errors import PrunekitError
from prunekit.export.replace import set_module
from prunekit.export.sliced import SlicedLinear
from prunekit.models.transformer_lm import CausalSelfAttention, FeedForward
from prunekit.prune.groups import CONSUMER_NAMES, FFN_PAIRS, fused_qkv_rows, head_size

GATES = {"LSTM": 4, "GRU": 3}
Record = dict[str, Any]


def is_plain_linear(m: object) -> bool:
    """An nn.Linear that export may replace (not nn.MultiheadAttention's out_proj)."""
    return isinstance(m, nn.Linear) and not isinstance(m, NonDynamicallyQuantizableLinear)


def sliced_linear(
    lin: nn.Linear,
    rows: Tensor | None = None,
    cols: Tensor | None = None,
    bias_add: Tensor | None = None,
) -> nn.Linear:
    """A new nn.Linear with rows `rows` and columns `cols` of `lin` (None = all); `bias_add` (out)
    is added to the (kept) bias, creating one if `lin` has none."""
    w = lin.weight.detach()
    b = None if lin.bias is None else lin.bias.detach()
    if rows is not None:
        w, b = w.index_select(0, rows), None if b is None else b.index_select(0, rows)
    if cols is not None:
        w = w.index_select(1, cols)
    if bias_add is not None:
        b = bias_add.to(w) if b is None else b + bias_add
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new.train(lin.training)


def _keep_one(dead: Tensor, prefer: Tensor) -> Tensor:
    """dead (n,) bool with at least one False: un-remove the first `prefer` unit (or unit 0)."""
    if not bool(dead.all()):
        return dead
    dead = dead.clone()
    first = int(prefer.nonzero()[0]) if bool(prefer.any()) else 0
    dead[first] = False
    return dead


def head_attrs(m: nn.Module, n_heads: int, d: int) -> dict[str, int]:
    """Set (and return) the head-count attributes a foreign attention module keeps in its forward
    (`num_heads`; GPT-2's `split_size`, the width of each of q, k, v)."""
    attrs = {"num_heads": n_heads, "split_size": n_heads * d}
    attrs = {k: v for k, v in attrs.items() if isinstance(getattr(m, k, None), int)}
    for k, v in attrs.items():
        setattr(m, k, v)
    return attrs


def shrink_heads(name: str, m: nn.Module) -> Record | None:
    """Remove the heads of attention module `m` (q/k/v/out_proj Linears) that nothing reads."""
    q, k, v, o = (getattr(m, a, None) for a in ("q_proj", "k_proj", "v_proj", "out_proj"))
    if not all(is_plain_linear(p) for p in (q, k, v, o)):
        return None
    width = q.out_features
    if not (k.out_features == v.out_features == o.in_features == width):
        return None
    d = head_size(m, width)
    if d is None:
        return None
    H = width // d
    unread = (o.weight.detach().reshape(o.out_features, H, d) == 0).all(dim=2).all(dim=0)  # (H,)
    const = torch.zeros(H, dtype=torch.bool)
    if isinstance(m, CausalSelfAttention):
        const = (v.weight.detach().reshape(H, d, -1) == 0).all(dim=2).all(dim=1)  # (H,)
    dead = _keep_one(unread | const, unread)
    if not bool(dead.any()):
        return None
    fold = dead & const & ~unread
    bias_add = None
    if bool(fold.any()) and v.bias is not None:
        cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in fold.nonzero().flatten()])
        bias_add = o.weight.detach()[:, cols] @ v.bias.detach()[cols]  # (out,)
    kept = (~dead).nonzero().flatten()
    idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in kept])
    m.q_proj, m.k_proj, m.v_proj = (sliced_linear(p, rows=idx) for p in (q, k, v))
    m.out_proj = sliced_linear(o, cols=idx, bias_add=bias_add)
    return {
        "module": name, "kind": "heads", "n": H, "head_size": d,
        "kept": kept.tolist(), "folded": fold.nonzero().flatten().tolist(),
        "attrs": head_attrs(m, kept.numel(), d),
    }  # fmt: skip


def shrink_fused_heads(name: str, m: nn.Module) -> Record | None:
    """Remove the unread heads of a fused q/k/v projection `c_attn` read by `c_proj` (GPT-2's
    attention, after `convert_conv1d`): their q, k, v rows and c_proj's columns."""
    c_attn, c_proj = getattr(m, "c_attn", None), getattr(m, "c_proj", None)
    if not (is_plain_linear(c_attn) and is_plain_linear(c_proj)) or hasattr(m, "q_attn"):
        return None
    width = c_proj.in_features
    d = head_size(m, width)
    if c_attn.out_features != 3 * width or d is None:
        return None
    H = width // d
    unread = (c_proj.weight.detach().reshape(-1, H, d) == 0).all(dim=2).all(dim=0)  # (H,)
    dead = _keep_one(unread, unread)
    if not bool(dead.any()):
        return None
    kept = (~dead).nonzero().flatten()
    rows = torch.tensor([r for h in kept.tolist() for r in fused_qkv_rows(width, d)[h]])
    rows = torch.sort(rows).values  # q rows of kept heads, then k, then v
    cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in kept.tolist()])
    m.c_attn, m.c_proj = sliced_linear(c_attn, rows=rows), sliced_linear(c_proj, cols=cols)
    return {
        "module": name, "kind": "heads", "n": H, "head_size": d, "kept": kept.tolist(),
        "folded": [], "attrs": head_attrs(m, kept.numel(), d),
    }  # fmt: skip


def shrink_ffn(name: str, m: nn.Module) -> Record | None:
    """Remove the hidden units of the first FFN pair of `m` (fc_in/fc_out, ...) nothing reads."""
    for a, b in FFN_PAIRS:
        fc_in, fc_out = getattr(m, a, None), getattr(m, b, None)
        if not (is_plain_linear(fc_in) and is_plain_linear(fc_out)):
            continue
        if fc_in.out_features != fc_out.in_features:
            continue
        unread = (fc_out.weight.detach() == 0).all(dim=0)  # (d_ff,)
        const = torch.zeros_like(unread)
        act = getattr(m, "act", None)
        if isinstance(m, FeedForward) and isinstance(act, nn.GELU | nn.ReLU):
            const = (fc_in.weight.detach() == 0).all(dim=1)
        dead = _keep_one(unread | const, unread)
        if not bool(dead.any()):
            return None
        fold = (dead & const & ~unread).nonzero().flatten()
        bias_add = None
        if fold.numel() and fc_in.bias is not None:
            value = act(fc_in.bias.detach()[fold])  # (n_fold,) constant unit outputs
            bias_add = fc_out.weight.detach()[:, fold] @ value  # (out,)
        kept = (~dead).nonzero().flatten()
        setattr(m, a, sliced_linear(fc_in, rows=kept))
        setattr(m, b, sliced_linear(fc_out, cols=kept, bias_add=bias_add))
        return {
            "module": name, "kind": "ffn_units", "n": int(dead.numel()),
            "kept": kept.tolist(), "folded": fold.tolist(),
        }  # fmt: skip
    return None


def _rnn_consumer(
    model: nn.Module, name: str, width: int, consumers: Mapping[str, str]
) -> tuple[str, nn.Linear] | None:
    if name in consumers:
        cname = consumers[name]
        try:
            c = model.get_submodule(cname)
        except AttributeError:
            c = None
        if not (is_plain_linear(c) and c.in_features == width):
            raise PrunekitError(
                f"consumers[{name!r}]={cname!r} must name an nn.Linear with in_features={width} "
                "that reads the RNN output: fix the consumers mapping"
            )
        return cname, c
    parent_path = name.rpartition(".")[0]
    parent = model.get_submodule(parent_path)
    for attr in CONSUMER_NAMES:
        c = getattr(parent, attr, None)
        if is_plain_linear(c) and c.in_features == width:
            return (f"{parent_path}.{attr}" if parent_path else attr), c
    return None


def _hh_weights(rnn: nn.RNNBase) -> list[Tensor]:
    return [getattr(rnn, n).detach() for n in rnn._flat_weights_names if "weight_hh" in n]


def _rnn_dead(rnn: nn.RNNBase, consumer: nn.Linear) -> list[list[Tensor]]:
    """dead[l][d] (H,) bool: units of layer l, direction d that nothing reads."""
    H, L = rnn.hidden_size, rnn.num_layers
    dirs = ["", "_reverse"] if rnn.bidirectional else [""]
    out = []
    for layer in range(L):
        row = []
        for d, sfx in enumerate(dirs):
            dead = (getattr(rnn, f"weight_hh_l{layer}{sfx}").detach() == 0).all(dim=0)
            cols = slice(d * H, (d + 1) * H)
            if layer + 1 < L:
                readers = [getattr(rnn, f"weight_ih_l{layer + 1}{s}") for s in dirs]
            else:
                readers = [consumer.weight]
            for w in readers:
                dead &= (w.detach()[:, cols] == 0).all(dim=0)
            row.append(dead)
        out.append(row)
    return out


def _pad(kept: Tensor, dead: Tensor, size: int) -> Tensor:
    """kept indices plus the lowest removed ones, sorted, up to `size`."""
    extra = dead.nonzero().flatten()[: size - kept.numel()]
    return torch.sort(torch.cat([kept, extra])).values


def _rebuilt_rnn(rnn: nn.RNNBase, kept: list[list[Tensor]]) -> nn.RNNBase:
    H, G, K = rnn.hidden_size, GATES[rnn.mode], kept[0][0].numel()
    dirs = ["", "_reverse"] if rnn.bidirectional else [""]
    w0 = rnn.weight_ih_l0
    new = type(rnn)(
        rnn.input_size, K, num_layers=rnn.num_layers, bias=rnn.bias,
        batch_first=rnn.batch_first, dropout=rnn.dropout, bidirectional=rnn.bidirectional,
        device=w0.device, dtype=w0.dtype,
    )  # fmt: skip
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            prev = None
            if layer > 0:
                prev = torch.cat([d * H + kept[layer - 1][d] for d in range(len(dirs))])
            for d, sfx in enumerate(dirs):
                units = kept[layer][d]
                gate_rows = torch.cat([g * H + units for g in range(G)])
                w_ih = getattr(rnn, f"weight_ih_l{layer}{sfx}").detach().index_select(0, gate_rows)
                if prev is not None:
                    w_ih = w_ih.index_select(1, prev)
                w_hh = getattr(rnn, f"weight_hh_l{layer}{sfx}").detach()
                getattr(new, f"weight_ih_l{layer}{sfx}").copy_(w_ih)
                getattr(new, f"weight_hh_l{layer}{sfx}").copy_(w_hh[gate_rows][:, units])
                if rnn.bias:
                    for b in ("ih", "hh"):
                        src = getattr(rnn, f"bias_{b}_l{layer}{sfx}").detach()
                        getattr(new, f"bias_{b}_l{layer}{sfx}").copy_(src[gate_rows])
    return new.train(rnn.training)


def shrink_rnn(
    model: nn.Module, name: str, rnn: nn.RNNBase, consumers: Mapping[str, str]
) -> Record | None:
    """Remove the hidden units of LSTM/GRU `rnn` (all layers, gate-aware) that nothing reads.

    The layer after it and the consumer Linear lose the matching input columns. An RNN with
    proj_size, or whose last layer has no consumer Linear to slice, is left as it is.
    """
    if rnn.mode not in GATES or getattr(rnn, "proj_size", 0):
        return {"module": name, "kind": "rnn_units", "skipped": "LSTM with proj_size"}
    n_dirs = 2 if rnn.bidirectional else 1
    found = _rnn_consumer(model, name, rnn.hidden_size * n_dirs, consumers)
    if found is None:
        if not any(bool((w == 0).all(dim=0).any()) for w in _hh_weights(rnn)):
            return None
        return {"module": name, "kind": "rnn_units", "skipped": "no consumer Linear found"}
    cname, consumer = found
    dead = _rnn_dead(rnn, consumer)
    kept = [[(~d).nonzero().flatten() for d in row] for row in dead]
    size = max(1, max(k.numel() for row in kept for k in row))
    if size == rnn.hidden_size:
        return None
    padded = [
        [_pad(k, d, size) for k, d in zip(kr, dr, strict=True)]
        for kr, dr in zip(kept, dead, strict=True)
    ]
    H = rnn.hidden_size
    cols = torch.cat([d * H + padded[-1][d] for d in range(n_dirs)])
    set_module(model, name, _rebuilt_rnn(rnn, padded))
    set_module(model, cname, sliced_linear(consumer, cols=cols))
    return {
        "module": name, "kind": "rnn_units", "n": H, "consumer": cname,
        "kept": [[k.tolist() for k in row] for row in padded],
        "removed_units_kept_as_padding": [
            [int(p.numel() - k.numel()) for p, k in zip(pr, kr, strict=True)]
            for pr, kr in zip(padded, kept, strict=True)
        ],
    }  # fmt: skip


def shrink_structures(model: nn.Module, consumers: Mapping[str, str] | None = None) -> list[Record]:
    """Remove unread heads, FFN units and RNN units everywhere in `model` (in place)."""
    records: list[Record] = []
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.LSTM | nn.GRU):
            rec = shrink_rnn(model, name, m, consumers or {})
        else:
            rec = shrink_heads(name, m) or shrink_fused_heads(name, m) or shrink_ffn(name, m)
        if rec is not None:
            records.append(rec)
    return records


def slice_rows_cols(model: nn.Module, max_inner_sparsity: float = 0.5) -> list[Record]:
    """Turn each nn.Linear with all-zero rows or columns into a `SlicedLinear` (in place).

    Skipped when the kept block is still more than `max_inner_sparsity` zeros (the unstructured
    path then decides dense vs CSR for the whole layer).
    """
    records: list[Record] = []
    for name, m in list(model.named_modules()):
        if not is_plain_linear(m) or not name:
            continue
        w = m.weight.detach()
        zero_rows, zero_cols = (w == 0).all(dim=1), (w == 0).all(dim=0)
        if not (bool(zero_rows.any()) or bool(zero_cols.any())):
            continue
        rows = _keep_one(zero_rows, zero_rows).logical_not().nonzero().flatten()
        cols = _keep_one(zero_cols, zero_cols).logical_not().nonzero().flatten()
        block = w.index_select(0, rows).index_select(1, cols)
        if float((block == 0).float().mean()) > max_inner_sparsity:
            continue
        r = None if rows.numel() == w.size(0) else rows
        c = None if cols.numel() == w.size(1) else cols
        set_module(model, name, SlicedLinear.from_linear(m, r, c))
        records.append(
            {
                "module": name, "kind": "rows_cols", "shape": list(w.shape),
                "kept_rows": int(rows.numel()), "kept_cols": int(cols.numel()),
            }
        )  # fmt: skip
    return records
