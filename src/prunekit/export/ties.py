"""Keep tied weights tied in a compact model: the embedding reads the output layer's tensor.

A model whose embedding and output layer share one weight (GPT-2's wte / lm_head, prunekit's
`tie_embeddings`) stores it once; `compact` would otherwise store it twice (the embedding's
table, and the output layer's copy in its fastest layout). `tied_pairs` finds the pairs on the
finalized model; `retie`, run last, replaces each embedding by a `TiedEmbedding` holding the output
layer's own Parameter (its pre-transposed or row layout, low-rank factors, kept columns), after
checking that it gives the same table. An output layer that became CSR or int8 keeps no fp32
copy to share, so its embedding stays as it is (recorded).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.export.layers import DenseLinear, LowRankLinear
from prunekit.export.replace import set_module
from prunekit.export.sliced import TiedEmbedding
from prunekit.prune.factorized import FactorizedEmbedding, FactorizedLinear

Record = dict[str, Any]


def _key(m: nn.Module) -> int | None:
    """id of the tensor an embedding / output layer stores its table in (U when factorized)."""
    if isinstance(m, FactorizedEmbedding | FactorizedLinear):
        return id(m.U)
    if isinstance(m, nn.Embedding | nn.Linear):
        return id(m.weight)
    return None


def tied_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(embedding path, output layer path) of every embedding sharing its table with a Linear."""
    embeddings = {
        _key(m): name
        for name, m in model.named_modules()
        if isinstance(m, nn.Embedding | FactorizedEmbedding)
    }
    return [
        (embeddings[_key(m)], name)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear | FactorizedLinear) and _key(m) in embeddings
    ]


def _tied(emb: nn.Module, out: nn.Module) -> TiedEmbedding | None:
    """The `TiedEmbedding` reading `out`'s tensors, or None for a layout without an fp32 copy."""
    cols, inner = None, out
    if type(out).__name__ == "SlicedLinear" and out.rows is None:
        cols, inner = out.cols, out.inner
    kw = {"num_embeddings": emb.num_embeddings, "embedding_dim": emb.embedding_dim}
    kw.update(cols=cols, padding_idx=getattr(emb, "padding_idx", None))
    if isinstance(inner, DenseLinear):
        table = inner.weight_t if inner.transposed else inner.weight_rows
        return TiedEmbedding(table, transposed=inner.transposed, **kw)
    if isinstance(inner, LowRankLinear):
        return TiedEmbedding(inner.U_t, transposed=True, proj=inner.V_t, **kw)
    return None


def retie(model: nn.Module, pairs: list[tuple[str, str]]) -> list[Record]:
    """Make each (embedding, output) pair share the output layer's tensor (in place)."""
    records = []
    for emb_name, out_name in pairs:
        emb, out = model.get_submodule(emb_name), model.get_submodule(out_name)
        record = {"embedding": emb_name, "output": out_name, "tied": False}
        new = _tied(emb, out)
        if new is None:
            record["reason"] = f"the output layer is a {type(out).__name__}: no fp32 table to share"
        elif not torch.allclose(new.weight, emb.weight, rtol=1e-5, atol=1e-7):
            record["reason"] = "the output layer's table differs from the embedding's"
        else:
            set_module(model, emb_name, new)
            record["tied"] = True
        records.append(record)
    return records
