"""Physically remove pruned conv channels and embedding columns (the channel chains of
`prunekit.prune.channels`), exactly.

- conv channels: output channel j of a conv that its chain's consumer does not read (input
  column j all zero: a conv's weight[:, j], a Linear's column j, an LSTM/GRU's weight_ih_l0
  column j) is removed from the conv (row j and its bias), from every BatchNorm / GroupNorm /
  InstanceNorm in between, and from the consumer's input;
- embedding columns read by a chain's consumer the same way; an embedding without one whose
  columns are all zero becomes a `SlicedEmbedding` (the kept columns stored, the output width
  kept), so the stored table is as small as the pruned one.

At least one channel of each chain stays. Functions edit a plain (finalized) fp32 model in place
and return JSON-able records for the export manifest.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from prunekit.export.replace import set_module
from prunekit.export.shrink import _keep_one, sliced_linear
from prunekit.export.sliced import SlicedEmbedding
from prunekit.prune.channels import CONVS, Chain, find_chains

Record = dict[str, Any]


def _rnn_inputs(rnn: nn.RNNBase) -> list[str]:
    return [n for n in rnn._flat_weights_names if n.startswith("weight_ih_l0")]


def unread_inputs(reader: nn.Module) -> Tensor:
    """(C,) bool: input channels / features of `reader` whose weight columns are all zero."""
    if isinstance(reader, nn.RNNBase):
        dead = None
        for name in _rnn_inputs(reader):
            d = (getattr(reader, name).detach() == 0).all(dim=0)
            dead = d if dead is None else dead & d
        return dead
    w = reader.weight.detach()
    return (w.transpose(0, 1).reshape(w.shape[1], -1) == 0).all(dim=1)


def _conv_like(conv: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
    w = conv.weight
    return type(conv)(
        in_channels, out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
        padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype,
    ).train(conv.training)  # fmt: skip


def slice_conv(conv: nn.Module, rows: Tensor | None = None, cols: Tensor | None = None):
    """A new conv keeping output channels `rows` and input channels `cols` (None = all)."""
    w = conv.weight.detach()
    b = None if conv.bias is None else conv.bias.detach()
    if rows is not None:
        w, b = w.index_select(0, rows), None if b is None else b.index_select(0, rows)
    if cols is not None:
        w = w.index_select(1, cols)
    new = _conv_like(conv, w.shape[1] * conv.groups, w.shape[0])
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def slice_rnn_inputs(rnn: nn.RNNBase, cols: Tensor) -> nn.RNNBase:
    """A new LSTM/GRU reading only input features `cols` (weight_ih_l0 columns kept)."""
    kw = dict(
        num_layers=rnn.num_layers, bias=rnn.bias, batch_first=rnn.batch_first,
        dropout=rnn.dropout, bidirectional=rnn.bidirectional,
    )  # fmt: skip
    if getattr(rnn, "proj_size", 0):
        kw["proj_size"] = rnn.proj_size
    w0 = rnn.weight_ih_l0
    new = type(rnn)(cols.numel(), rnn.hidden_size, **kw, device=w0.device, dtype=w0.dtype)
    with torch.no_grad():
        for name, p in new.named_parameters():
            src = getattr(rnn, name).detach()
            p.copy_(src.index_select(1, cols) if name.startswith("weight_ih_l0") else src)
    return new.train(rnn.training)


def slice_norm(norm: nn.Module, kept: Tensor) -> nn.Module:
    """A BatchNorm / InstanceNorm / per-channel GroupNorm over the `kept` channels only."""
    k = kept.numel()
    if isinstance(norm, nn.GroupNorm):
        new = nn.GroupNorm(k, k, eps=norm.eps, affine=norm.affine)
    else:
        new = type(norm)(
            k, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
            track_running_stats=norm.track_running_stats,
        )  # fmt: skip
    with torch.no_grad():
        for name, t in list(new.named_parameters()) + list(new.named_buffers()):
            src = getattr(norm, name)
            t.copy_(src if t.dim() == 0 else src.detach().index_select(0, kept))
    return new.train(norm.training)


def _slice_reader(reader: nn.Module, kept: Tensor) -> nn.Module:
    if isinstance(reader, nn.RNNBase):
        return slice_rnn_inputs(reader, kept)
    if isinstance(reader, CONVS):
        return slice_conv(reader, cols=kept)
    return sliced_linear(reader, cols=kept)


def _sliced_embedding_module(emb: nn.Embedding, kept: Tensor) -> nn.Embedding:
    w = emb.weight.detach().index_select(1, kept)
    new = nn.Embedding(
        w.shape[0], w.shape[1], padding_idx=emb.padding_idx, max_norm=emb.max_norm,
        norm_type=emb.norm_type, scale_grad_by_freq=emb.scale_grad_by_freq, sparse=emb.sparse,
    )  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(w)
    return new


def shrink_chain(model: nn.Module, chain: Chain) -> Record | None:
    """Remove the channels of `chain.producer` that its consumer does not read (in place)."""
    producer = model.get_submodule(chain.producer)
    reader = model.get_submodule(chain.consumer)
    unread = unread_inputs(reader)
    dead = _keep_one(unread, unread)
    if not bool(dead.any()):
        return None
    kept = (~dead).nonzero().flatten()
    if isinstance(producer, nn.Embedding):
        set_module(model, chain.producer, _sliced_embedding_module(producer, kept))
        kind = "embedding_cols"
    else:
        set_module(model, chain.producer, slice_conv(producer, rows=kept))
        kind = "conv_channels"
    for name in chain.norms:
        set_module(model, name, slice_norm(model.get_submodule(name), kept))
    set_module(model, chain.consumer, _slice_reader(reader, kept))
    return {
        "module": chain.producer, "kind": kind, "n": int(dead.numel()), "kept": kept.tolist(),
        "consumer": chain.consumer, "norms": list(chain.norms),
    }  # fmt: skip


def shrink_chains(model: nn.Module, consumers: dict[str, str] | None = None) -> list[Record]:
    """Remove unread conv channels / embedding columns of every chain of `model` (in place)."""
    rnns = {n for n, m in model.named_modules() if isinstance(m, nn.RNNBase)}
    chains = find_chains(model, {k: v for k, v in (consumers or {}).items() if k not in rnns})
    records = [shrink_chain(model, c) for c in chains.values()]
    return [r for r in records if r is not None]


def slice_embeddings(model: nn.Module) -> list[Record]:
    """Turn each nn.Embedding with all-zero columns into a `SlicedEmbedding` (in place)."""
    records: list[Record] = []
    for name, m in list(model.named_modules()):
        if type(m) is not nn.Embedding or not name or m.max_norm is not None:
            continue
        zero = (m.weight.detach() == 0).all(dim=0)
        if not bool(zero.any()):
            continue
        kept = _keep_one(zero, zero).logical_not().nonzero().flatten()
        set_module(model, name, SlicedEmbedding.from_embedding(m, kept))
        records.append(
            {"module": name, "kind": "embedding_cols", "n": int(zero.numel()),
             "kept": kept.tolist(), "consumer": None}
        )  # fmt: skip
    return records
