"""Records of plain torch layers and of the embedding / conv forms of compact export.

Used by `prunekit.export.records` (which lists every handler): torch convolutions, BatchNorm,
GroupNorm and embeddings (their shapes may differ from the base model after export), and the
`SlicedEmbedding`, `TiedEmbedding` and `LowRankConv` forms. Each kind has `save(module) ->
(meta, tensors)`, `expected(meta) -> {field: (shape, dtype)}` and `build(meta, tensors)`.

A `TiedEmbedding` stores no table of its own when the output layer it reads is saved too: its
record names that layer's tensor (`table`, `proj`: keys of the weights file) and `link_tied`
points the rebuilt embedding at the rebuilt layer's Parameter, so the loaded model stores it once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.export.sliced import LowRankConv, SlicedEmbedding, TiedEmbedding

Meta = dict[str, Any]
Tensors = dict[str, Tensor]
Expected = dict[str, tuple[list[int], str]]
F32 = "float32"
_CONV_ARGS = ("in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups")


def _param(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=False)


# ---------------------------------------------------------------- convolutions


def save_conv(m: nn.Module) -> tuple[Meta, Tensors]:
    meta: Meta = {k: getattr(m, k) for k in ("in_channels", "out_channels", "groups")}
    meta.update({k: list(getattr(m, k)) for k in ("kernel_size", "stride", "dilation")})
    meta.update(dims=1 if isinstance(m, nn.Conv1d) else 2, bias=m.bias is not None)
    meta.update(padding=m.padding if isinstance(m.padding, str) else list(m.padding))
    meta["padding_mode"] = m.padding_mode
    t = {"weight": m.weight.detach()}
    return meta, t if m.bias is None else {**t, "bias": m.bias.detach()}


def expect_conv(meta: Meta) -> Expected:
    shape = [meta["out_channels"], meta["in_channels"] // meta["groups"], *meta["kernel_size"]]
    out = {"weight": (shape, F32)}
    return {**out, "bias": ([meta["out_channels"]], F32)} if meta["bias"] else out


def build_conv(meta: Meta, t: Tensors) -> nn.Module:
    cls = nn.Conv1d if meta["dims"] == 1 else nn.Conv2d
    padding = meta["padding"] if isinstance(meta["padding"], str) else tuple(meta["padding"])
    kw = {k: tuple(meta[k]) if isinstance(meta[k], list) else int(meta[k]) for k in _CONV_ARGS}
    m = cls(**kw, padding=padding, bias=meta["bias"], padding_mode=meta["padding_mode"],
            device="meta")  # fmt: skip
    m.weight = _param(t["weight"])
    if meta["bias"]:
        m.bias = _param(t["bias"])
    return m


def save_lowrank_conv(m: LowRankConv) -> tuple[Meta, Tensors]:
    return {"rank": m.rank}, {}


def build_lowrank_conv(meta: Meta, t: Tensors, placeholder: type[nn.Module]) -> nn.Module:
    return LowRankConv(placeholder(), placeholder())


# ---------------------------------------------------------------- norms


def save_norm(m: nn.Module) -> tuple[Meta, Tensors]:
    group = isinstance(m, nn.GroupNorm)
    meta: Meta = {"cls": type(m).__name__, "eps": m.eps, "affine": m.affine}
    if group:
        meta.update(num_groups=m.num_groups, channels=m.num_channels)
    else:
        meta.update(channels=m.num_features, momentum=m.momentum)
        meta["track_running_stats"] = m.track_running_stats
    return meta, {k: v.detach() for k, v in m.state_dict().items()}


def _norm(meta: Meta, device: str | None = None) -> nn.Module:
    cls = getattr(nn, meta["cls"], None)
    names = ("BatchNorm1d", "BatchNorm2d", "InstanceNorm1d", "InstanceNorm2d", "GroupNorm")
    if meta["cls"] not in names or cls is None:
        raise PrunekitError(
            f"norm class {meta['cls']!r} is not one of {list(names)}: the manifest does not "
            "match this prunekit; re-export the model"
        )
    if meta["cls"] == "GroupNorm":
        return cls(meta["num_groups"], meta["channels"], meta["eps"], meta["affine"], device=device)
    return cls(
        meta["channels"], meta["eps"], meta["momentum"], meta["affine"],
        meta["track_running_stats"], device=device,
    )  # fmt: skip


def expect_norm(meta: Meta) -> Expected:
    state = _norm(meta, "meta").state_dict()
    return {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}


def build_norm(meta: Meta, t: Tensors) -> nn.Module:
    m = _norm(meta)
    m.load_state_dict(t, strict=True)
    return m


# ---------------------------------------------------------------- embeddings


def save_embedding(m: nn.Embedding) -> tuple[Meta, Tensors]:
    meta = {"num": m.num_embeddings, "dim": m.embedding_dim, "padding_idx": m.padding_idx}
    return meta, {"weight": m.weight.detach()}


def expect_embedding(meta: Meta) -> Expected:
    return {"weight": ([meta["num"], meta["dim"]], F32)}


def build_embedding(meta: Meta, t: Tensors) -> nn.Module:
    m = nn.Embedding(meta["num"], meta["dim"], padding_idx=meta["padding_idx"], device="meta")
    m.weight = _param(t["weight"])
    return m


def save_sliced_embedding(m: SlicedEmbedding) -> tuple[Meta, Tensors]:
    meta = {"num": m.num_embeddings, "dim": m.embedding_dim, "kept": int(m.cols.numel())}
    meta["padding_idx"] = m.padding_idx
    return meta, {"table": m.table.detach(), "cols": m.cols}


def expect_sliced_embedding(meta: Meta) -> Expected:
    k = meta["kept"]
    return {"table": ([meta["num"], k], F32), "cols": ([k], "int64")}


def _check_cols(cols: Tensor | None, dim: int) -> None:
    if cols is not None and cols.numel() and not (int(cols.min()) >= 0 and int(cols.max()) < dim):
        raise PrunekitError(
            f"the kept columns in the weights file point outside 0..{dim - 1}: the file is "
            "corrupt; re-export the model"
        )


def build_sliced_embedding(meta: Meta, t: Tensors) -> nn.Module:
    _check_cols(t["cols"], meta["dim"])
    return SlicedEmbedding(t["table"], t["cols"], meta["dim"], meta["padding_idx"])


def save_tied(m: TiedEmbedding) -> tuple[Meta, Tensors]:
    """Own tensors only; `layer_records` replaces them by keys of the output layer's."""
    meta = {"num": m.num_embeddings, "dim": m.embedding_dim, "transposed": m.transposed}
    meta.update(padding_idx=m.padding_idx, table=None, proj=None)
    meta["shapes"] = {"table": list(m.table.shape)}
    tensors = {"table": m.table.detach()}
    if m.proj is not None:
        meta["shapes"]["proj"] = list(m.proj.shape)
        tensors["proj"] = m.proj.detach()
    if m.cols is not None:
        meta["kept"] = int(m.cols.numel())
        tensors["cols"] = m.cols
    return meta, tensors


def expect_tied(meta: Meta) -> Expected:
    out: Expected = {}
    for field, shape in meta["shapes"].items():
        if meta.get(field) is None:  # stored here, not shared with the output layer
            out[field] = (shape, F32)
    if meta.get("kept") is not None:
        out["cols"] = ([meta["kept"]], "int64")
    return out


def build_tied(meta: Meta, t: Tensors) -> nn.Module:
    """The embedding with its own tensors, or empty ones that `link_tied` replaces."""
    _check_cols(t.get("cols"), meta["dim"])
    shapes = meta["shapes"]
    table = t.get("table", torch.empty(shapes["table"]))
    proj = t.get("proj", torch.empty(shapes["proj"])) if "proj" in shapes else None
    return TiedEmbedding(
        _param(table), transposed=meta["transposed"], num_embeddings=meta["num"],
        embedding_dim=meta["dim"], cols=t.get("cols"),
        proj=None if proj is None else _param(proj), padding_idx=meta["padding_idx"],
    )  # fmt: skip


def link_tied(model: nn.Module, path: str, meta: Meta) -> None:
    """Point the rebuilt TiedEmbedding at `path` to the output layer's rebuilt Parameters.

    Raises:
        PrunekitError: the named tensor is not a Parameter of that shape in the model.
    """
    emb = model.get_submodule(path)
    for field in ("table", "proj"):
        key = meta.get(field)
        if key is None:
            continue
        owner, _, attr = key.rpartition(".")
        try:
            p = getattr(model.get_submodule(owner), attr)
        except AttributeError:
            p = None
        if not isinstance(p, nn.Parameter) or list(p.shape) != meta["shapes"][field]:
            raise PrunekitError(
                f"layer {path!r} reads its {field} from {key!r}, which the rebuilt model does "
                "not hold with that shape: the manifest does not match its weights; re-export"
            )
        setattr(emb, field, p)
