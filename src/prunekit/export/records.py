"""Per-layer records of the compact format: how each compact layer becomes JSON + plain tensors.

A handler has a `kind` (the manifest's name for it), `save(module) -> (meta, tensors)`,
`expected(meta) -> {field: (shape, dtype)}` (what the weights file must hold for that meta) and
`build(meta, tensors) -> module`. No pickle anywhere: int8 weights are stored as their int8
values with their scales / zero points (per output channel as tensors, per tensor in the JSON)
and re-packed into torch's int8 kernels on load. Containers (`sliced`, `linear_rnn`) are built
with placeholders that their children's records replace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.ao.nn.quantized.dynamic as qd
from torch import Tensor, nn
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase as DynamicRNNBase

from prunekit.errors import PrunekitError
from prunekit.export import bidir_rnn
from prunekit.export import records_torch as rt
from prunekit.export.bidir_rnn import BiLinearRNN
from prunekit.export.fast_dense import OneDnnOffGRU, OneDnnOffLSTM
from prunekit.export.layers import (
    DenseLinear,
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    SparseLinear,
    quiet_quantization,
)
from prunekit.export.linear_rnn import LinearRNN
from prunekit.export.sliced import (
    LowRankConv,
    LowRankEmbedding,
    SlicedEmbedding,
    SlicedLinear,
    TiedEmbedding,
)

Meta = dict[str, Any]
Tensors = dict[str, Tensor]
Expected = dict[str, tuple[list[int], str]]
F32 = "float32"


class Placeholder(nn.Module):
    """Stands in for a child of a container until the child's own record replaces it."""


@dataclass(frozen=True)
class Handler:
    """How one kind of compact layer is saved, checked and rebuilt."""

    kind: str
    types: tuple[type, ...]
    save: Callable[[nn.Module], tuple[Meta, Tensors]]
    expected: Callable[[Meta], Expected]
    build: Callable[[Meta, Tensors], nn.Module]
    container: bool = False
    link: Callable[[nn.Module, str, Meta], None] | None = None  # after every layer is built


def dtype_name(t: Tensor) -> str:
    """'float32', 'int8', ... for a plain tensor."""
    return str(t.dtype).removeprefix("torch.")


def _bias(meta: Meta, out: int) -> Expected:
    return {"bias": ([out], F32)} if meta["bias"] else {}


def _with_bias(tensors: Tensors, bias: Tensor | None) -> Tensors:
    return tensors if bias is None else {**tensors, "bias": bias.detach()}


# ---------------------------------------------------------------- fp32 linear layers


def _save_linear(m: nn.Linear) -> tuple[Meta, Tensors]:
    meta = {"in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
    return meta, _with_bias({"weight": m.weight.detach()}, m.bias)


def _expect_linear(meta: Meta) -> Expected:
    return {"weight": ([meta["out"], meta["in"]], F32), **_bias(meta, meta["out"])}


def _build_linear(meta: Meta, t: Tensors) -> nn.Module:
    m = nn.Linear(meta["in"], meta["out"], bias=meta["bias"], device="meta")
    m.weight = nn.Parameter(t["weight"], requires_grad=False)
    if meta["bias"]:
        m.bias = nn.Parameter(t["bias"], requires_grad=False)
    return m


def _save_dense(m: DenseLinear) -> tuple[Meta, Tensors]:
    meta = {"in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
    meta["transposed"] = m.transposed
    w = {"weight_t": m.weight_t} if m.transposed else {"weight_rows": m.weight_rows}
    return meta, _with_bias({k: v.detach() for k, v in w.items()}, m.bias)


def _expect_dense(meta: Meta) -> Expected:
    i, o = meta["in"], meta["out"]
    w = {"weight_t": ([i, o], F32)} if meta["transposed"] else {"weight_rows": ([o, i], F32)}
    return {**w, **_bias(meta, o)}


def _build_dense(meta: Meta, t: Tensors) -> nn.Module:
    w = t["weight_t"].t() if meta["transposed"] else t["weight_rows"]
    return DenseLinear(w, t.get("bias"), transposed=meta["transposed"])


def _save_lowrank(m: LowRankLinear) -> tuple[Meta, Tensors]:
    meta = {"in": m.in_features, "out": m.out_features, "rank": m.rank, "bias": m.bias is not None}
    return meta, _with_bias({"U_t": m.U_t.detach(), "V_t": m.V_t.detach()}, m.bias)


def _expect_lowrank(meta: Meta) -> Expected:
    i, o, r = meta["in"], meta["out"], meta["rank"]
    return {"U_t": ([r, o], F32), "V_t": ([i, r], F32), **_bias(meta, o)}


def _build_lowrank(meta: Meta, t: Tensors) -> nn.Module:
    return LowRankLinear(t["U_t"].t(), t["V_t"].t(), t.get("bias"))


def _save_csr(m: SparseLinear) -> tuple[Meta, Tensors]:
    meta = {"in": m.in_features, "out": m.out_features, "nnz": m.nnz, "bias": m.bias is not None}
    parts = {"crow_indices": m.crow_indices, "col_indices": m.col_indices, "values": m.values}
    return meta, _with_bias({k: v.detach() for k, v in parts.items()}, m.bias)


def _expect_csr(meta: Meta) -> Expected:
    o, n = meta["out"], meta["nnz"]
    parts = {"crow_indices": ([o + 1], "int32"), "col_indices": ([n], "int32")}
    return {**parts, "values": ([n], F32), **_bias(meta, o)}


def _build_csr(meta: Meta, t: Tensors) -> nn.Module:
    crow, col = t["crow_indices"], t["col_indices"]
    ok = int(crow[0]) == 0 and int(crow[-1]) == meta["nnz"] and bool((crow.diff() >= 0).all())
    if ok and col.numel():
        ok = int(col.min()) >= 0 and int(col.max()) < meta["in"]
    if not ok:
        raise PrunekitError(
            "the CSR indices in the weights file are not a valid (out, in) sparse matrix: "
            "the file is corrupt; re-export the model"
        )
    return SparseLinear(crow, col, t["values"], (meta["out"], meta["in"]), t.get("bias"))


# ---------------------------------------------------------------- int8 layers


def _save_qtensor(q: Tensor, prefix: str = "") -> tuple[Meta, Tensors]:
    """An int8 quantized tensor as its int8 values + scales/zero points (meta, tensors)."""
    tensors = {f"{prefix}qweight": q.int_repr()}
    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        meta = {"scheme": "per_channel_affine", "axis": int(q.q_per_channel_axis())}
        tensors[f"{prefix}scales"] = q.q_per_channel_scales().to(torch.float64)
        tensors[f"{prefix}zero_points"] = q.q_per_channel_zero_points().to(torch.int64)
    else:
        meta = {"scheme": "per_tensor_affine", "scale": float(q.q_scale())}
        meta["zero_point"] = int(q.q_zero_point())
    return {"dtype": "qint8", **meta}, tensors


def _expect_qtensor(quant: Meta, shape: list[int], prefix: str = "") -> Expected:
    out = {f"{prefix}qweight": (shape, "int8")}
    if quant["scheme"] == "per_channel_affine":
        n = shape[quant["axis"]]
        out[f"{prefix}scales"] = ([n], "float64")
        out[f"{prefix}zero_points"] = ([n], "int64")
    return out


def _load_qtensor(quant: Meta, t: Tensors, prefix: str = "") -> Tensor:
    values = t[f"{prefix}qweight"]
    if quant["scheme"] == "per_channel_affine":
        return torch._make_per_channel_quantized_tensor(
            values, t[f"{prefix}scales"], t[f"{prefix}zero_points"], quant["axis"]
        )
    return torch._make_per_tensor_quantized_tensor(values, quant["scale"], quant["zero_point"])


def _save_int8(m: qd.Linear, prefix: str = "") -> tuple[Meta, Tensors]:
    w, b = m._weight_bias()
    quant, tensors = _save_qtensor(w, prefix)
    meta = {"in": m.in_features, "out": m.out_features, "bias": b is not None, "quant": quant}
    meta["cls"] = "Int8Linear" if isinstance(m, Int8Linear) else "torch"
    if b is not None:
        tensors[f"{prefix}bias"] = b.detach()
    return meta, tensors


def _expect_int8(meta: Meta, prefix: str = "") -> Expected:
    out = _expect_qtensor(meta["quant"], [meta["out"], meta["in"]], prefix)
    if meta["bias"]:
        out[f"{prefix}bias"] = ([meta["out"]], F32)
    return out


def _build_int8(meta: Meta, t: Tensors, prefix: str = "") -> nn.Module:
    cls = Int8Linear if meta.get("cls") == "Int8Linear" else qd.Linear
    with quiet_quantization():
        m = cls(meta["in"], meta["out"], bias_=meta["bias"], dtype=torch.qint8)
        m.set_weight_bias(_load_qtensor(meta["quant"], t, prefix), t.get(f"{prefix}bias"))
    return m


def _save_int8_lowrank(m: Int8LowRankLinear) -> tuple[Meta, Tensors]:
    first, t1 = _save_int8(m.first, "first.")
    second, t2 = _save_int8(m.second, "second.")
    meta = {"in": m.in_features, "out": m.out_features, "rank": m.rank}
    return {**meta, "first": first, "second": second}, {**t1, **t2}


def _expect_int8_lowrank(meta: Meta) -> Expected:
    return {**_expect_int8(meta["first"], "first."), **_expect_int8(meta["second"], "second.")}


def _build_int8_lowrank(meta: Meta, t: Tensors) -> nn.Module:
    first = _build_int8(meta["first"], t, "first.")
    return Int8LowRankLinear(first, _build_int8(meta["second"], t, "second."))


# ---------------------------------------------------------------- containers and embeddings


def _save_sliced(m: SlicedLinear) -> tuple[Meta, Tensors]:
    meta = {"in": m.in_features, "out": m.out_features}
    meta["kept_rows"] = None if m.rows is None else int(m.rows.numel())
    meta["kept_cols"] = None if m.cols is None else int(m.cols.numel())
    t = {k: getattr(m, k) for k in ("rows", "cols", "fill") if getattr(m, k) is not None}
    return meta, t


def _expect_sliced(meta: Meta) -> Expected:
    out: Expected = {}
    if meta["kept_rows"] is not None:
        out = {"rows": ([meta["kept_rows"]], "int64"), "fill": ([meta["out"]], F32)}
    if meta["kept_cols"] is not None:
        out["cols"] = ([meta["kept_cols"]], "int64")
    return out


def _build_sliced(meta: Meta, t: Tensors) -> nn.Module:
    for key, n in (("rows", meta["out"]), ("cols", meta["in"])):
        idx = t.get(key)
        if idx is not None and idx.numel() and not (int(idx.min()) >= 0 and int(idx.max()) < n):
            raise PrunekitError(
                f"the kept {key} in the weights file point outside 0..{n - 1}: the file is "
                "corrupt; re-export the model"
            )
    args = (meta["in"], meta["out"], t.get("rows"), t.get("cols"), t.get("fill"))
    return SlicedLinear(Placeholder(), *args)


def _save_lowrank_embedding(m: LowRankEmbedding) -> tuple[Meta, Tensors]:
    meta = {"num": m.num_embeddings, "dim": m.embedding_dim, "rank": m.rank}
    meta["padding_idx"] = m.padding_idx
    return meta, {"table": m.table.detach(), "proj": m.proj.detach()}


def _expect_lowrank_embedding(meta: Meta) -> Expected:
    r = meta["rank"]
    return {"table": ([meta["num"], r], F32), "proj": ([r, meta["dim"]], F32)}


def _build_lowrank_embedding(meta: Meta, t: Tensors) -> nn.Module:
    return LowRankEmbedding(t["table"], t["proj"], meta["padding_idx"])


def _save_linear_rnn(m: LinearRNN) -> tuple[Meta, Tensors]:
    meta = {"mode": m.mode, "input_size": m.input_size, "hidden_size": m.hidden_size}
    meta.update(num_layers=m.num_layers, batch_first=m.batch_first, dropout=m.dropout)
    return meta, {}


def _build_linear_rnn(meta: Meta, t: Tensors) -> nn.Module:
    n = meta["num_layers"]
    return LinearRNN(
        meta["mode"], meta["input_size"], meta["hidden_size"],
        [Placeholder() for _ in range(n)], [Placeholder() for _ in range(n)],
        batch_first=meta["batch_first"], dropout=meta["dropout"],
    )  # fmt: skip


# ---------------------------------------------------------------- recurrent layers

_RNN_CLASSES = {
    "LSTM": nn.LSTM, "GRU": nn.GRU, "OneDnnOffLSTM": OneDnnOffLSTM, "OneDnnOffGRU": OneDnnOffGRU,
}  # fmt: skip


def _rnn_meta(m: nn.Module) -> Meta:
    meta = {k: getattr(m, k) for k in _RNN_ARGS}
    return {"mode": m.mode, **meta, "dropout": float(m.dropout)}


_RNN_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional")


def _rnn_kwargs(meta: Meta) -> Meta:
    """Constructor arguments of the RNN a record describes."""
    kw = {k: meta[k] for k in _RNN_ARGS}
    kw["dropout"] = float(meta["dropout"])
    if meta.get("proj_size"):
        kw["proj_size"] = int(meta["proj_size"])
    return kw


def _rnn_shapes(meta: Meta) -> dict[str, list[int]]:
    """Parameter name -> shape of the fp32 RNN the meta describes (built on the meta device)."""
    cls = nn.LSTM if meta["mode"] == "LSTM" else nn.GRU
    rnn = cls(**_rnn_kwargs(meta), device="meta")
    return {n: list(p.shape) for n, p in rnn.named_parameters()}


def _save_rnn(m: nn.RNNBase) -> tuple[Meta, Tensors]:
    meta = {**_rnn_meta(m), "proj_size": getattr(m, "proj_size", 0), "cls": type(m).__name__}
    if meta["cls"] not in _RNN_CLASSES:
        meta["cls"] = m.mode
    return meta, {n: p.detach() for n, p in m.named_parameters()}


def _expect_rnn(meta: Meta) -> Expected:
    return {n: (s, F32) for n, s in _rnn_shapes(meta).items()}


def _build_rnn(meta: Meta, t: Tensors) -> nn.Module:
    cls = _RNN_CLASSES.get(meta["cls"], nn.LSTM if meta["mode"] == "LSTM" else nn.GRU)
    rnn = cls(**_rnn_kwargs(meta), device="meta")
    for name in list(rnn._flat_weights_names):
        setattr(rnn, name, nn.Parameter(t[name], requires_grad=False))
    rnn._init_flat_weights()
    return rnn.eval()


def _save_int8_rnn(m: DynamicRNNBase) -> tuple[Meta, Tensors]:
    wb = m._weight_bias()
    quant, tensors = {}, {}
    for name, q in wb["weight"].items():
        quant[name], qt = _save_qtensor(q, f"{name}.")
        tensors.update(qt)
    tensors.update({n: b.detach() for n, b in wb["bias"].items()})
    return {**_rnn_meta(m), "quant": quant}, tensors


def _expect_int8_rnn(meta: Meta) -> Expected:
    out: Expected = {}
    for name, shape in _rnn_shapes(meta).items():
        if name.startswith("weight"):
            out.update(_expect_qtensor(meta["quant"][name], shape, f"{name}."))
        else:
            out[name] = (shape, F32)
    return out


def _build_int8_rnn(meta: Meta, t: Tensors) -> nn.Module:
    cls = qd.LSTM if meta["mode"] == "LSTM" else qd.GRU
    kw = _rnn_kwargs(meta)
    weights = {}
    for name in _rnn_shapes(meta):
        q = name.startswith("weight")
        weights[name] = _load_qtensor(meta["quant"][name], t, f"{name}.") if q else t[name]
    with quiet_quantization():
        m = cls(**kw, dtype=torch.qint8)
        m.set_weight_bias(weights)
    return m


HANDLERS: tuple[Handler, ...] = (
    Handler("dense", (DenseLinear,), _save_dense, _expect_dense, _build_dense),
    Handler("lowrank", (LowRankLinear,), _save_lowrank, _expect_lowrank, _build_lowrank),
    Handler("csr", (SparseLinear,), _save_csr, _expect_csr, _build_csr),
    Handler(
        "int8_lowrank", (Int8LowRankLinear,),
        _save_int8_lowrank, _expect_int8_lowrank, _build_int8_lowrank,
    ),
    Handler("int8", (qd.Linear,), _save_int8, _expect_int8, _build_int8),
    Handler("sliced", (SlicedLinear,), _save_sliced, _expect_sliced, _build_sliced, True),
    Handler(
        "lowrank_embedding", (LowRankEmbedding,),
        _save_lowrank_embedding, _expect_lowrank_embedding, _build_lowrank_embedding,
    ),
    Handler(
        "linear_rnn", (LinearRNN,), _save_linear_rnn, lambda meta: {}, _build_linear_rnn, True
    ),
    Handler(
        "bilinear_rnn", (BiLinearRNN,), bidir_rnn.save_record, lambda meta: {},
        lambda meta, t: bidir_rnn.build_record(meta, t, Placeholder), True,
    ),
    Handler("int8_rnn", (DynamicRNNBase,), _save_int8_rnn, _expect_int8_rnn, _build_int8_rnn),
    Handler("rnn", (nn.LSTM, nn.GRU), _save_rnn, _expect_rnn, _build_rnn),
    Handler("linear", (nn.Linear,), _save_linear, _expect_linear, _build_linear),
    Handler(
        "sliced_embedding", (SlicedEmbedding,),
        rt.save_sliced_embedding, rt.expect_sliced_embedding, rt.build_sliced_embedding,
    ),
    Handler(
        "tied_embedding", (TiedEmbedding,), rt.save_tied, rt.expect_tied, rt.build_tied,
        link=rt.link_tied,
    ),
    Handler(
        "lowrank_conv", (LowRankConv,), rt.save_lowrank_conv, lambda meta: {},
        lambda meta, t: rt.build_lowrank_conv(meta, t, Placeholder), True,
    ),
    Handler("conv", (nn.Conv1d, nn.Conv2d), rt.save_conv, rt.expect_conv, rt.build_conv),
    Handler(
        "norm", (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.GroupNorm),
        rt.save_norm, rt.expect_norm, rt.build_norm,
    ),
    Handler(
        "embedding", (nn.Embedding,), rt.save_embedding, rt.expect_embedding, rt.build_embedding
    ),
)  # fmt: skip
BY_KIND = {h.kind: h for h in HANDLERS}


def handler_for(module: nn.Module) -> Handler | None:
    """The handler of `module`'s type (first match in HANDLERS), or None for plain modules."""
    return next((h for h in HANDLERS if isinstance(module, h.types)), None)
