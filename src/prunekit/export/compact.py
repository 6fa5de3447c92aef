"""`compact(model)`: a pruned model as a plain, physically smaller and faster nn.Module.

Steps, on a deep copy (the input may have prunekit masks attached or be finalized already):

1. masks are baked in (`prunekit.prune.finalize`); Hugging Face `Conv1D` layers become the
   nn.Linear they are (`prunekit.export.conv1d`);
2. factorized layers keep their unmasked ranks k: two thin matmuls (`LowRankLinear`,
   `LowRankEmbedding`, `LowRankConv`, singular values folded into U) when k (a + b) < a b, else
   one dense layer; trace-norm / SVD factored matrices (`prunekit.lowrank`, W = U V) likewise,
   LSTM / GRU gate stacks inside a `LinearRNN` / `BiLinearRNN` (`prunekit.export.lowrank_rnn`);
3. structured pruning is made physical (`prunekit.export.shrink`, `shrink_channels`): heads
   (GPT-2's fused c_attn too), FFN units, gate-aware LSTM/GRU units, conv channels and embedding
   columns that nothing reads are removed, with the next layer's input, the norms in between
   and the consumer's columns (consumers given at prune time are remembered); other Linears
   with zero rows/columns become `SlicedLinear`, embeddings with zero columns `SlicedEmbedding`;
4. every Linear (and Conv1D) goes to its fastest dense layout and every RNN to its fastest kernel setting
   (`fastest_dense`); each layer that still has zeros is timed dense vs CSR at the serving batch
   size (`choose_linear`; LSTM/GRU: `LinearRNN` with CSR gate matrices vs the fused dense kernel)
   and keeps dense unless CSR is measurably faster; the choice and the measured ratio are recorded;
   an embedding tied to the output layer then reads that layer's tensor (`prunekit.export.ties`),
   so the compact model stores it once, as the pruned one does;
5. with `int8=True`, `quantize_compact` (`prunekit.export.int8_choice`) then makes the linear and
   recurrent layers dynamic int8 (ranks and zeros preserved; CSR layers stay CSR where that is
   faster; with int8_policy="fastest" every layer stays fp32 where int8 is not faster).

The returned manifest holds what the export decided (structure kept, ranks, choices, summary);
`prunekit.export.io.save_compact` adds the per-layer records and writes it next to the weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export.choose import choose_linear, outgrows_cache, weight_sparsity
from prunekit.export.conv1d import convert_conv1d, is_hf_conv1d
from prunekit.export.fast_dense import DenseLayout, fastest_dense
from prunekit.export.int8_choice import Int8Policy, quantize_compact
from prunekit.export.layers import DenseLinear, LowRankLinear, SparseLinear
from prunekit.export.linear_rnn import CompactRNNLM, LinearRNN
from prunekit.export.lowrank_rnn import convert_lowrank, has_lowrank
from prunekit.export.manifest import FORMAT, FORMAT_VERSION
from prunekit.export.replace import replace_modules, set_module
from prunekit.export.shrink import shrink_structures, slice_rows_cols
from prunekit.export.shrink_channels import shrink_chains, slice_embeddings
from prunekit.export.size import compact_size_report
from prunekit.export.sliced import LowRankConv, LowRankEmbedding
from prunekit.export.ties import retie, tied_pairs
from prunekit.export.timing import check_positive_int, median_us, num_threads
from prunekit.models.registry import build_model, model_config
from prunekit.models.rnn_lm import RNNLM
from prunekit.prune.factorized import (
    FACTORIZED_TYPES,
    FactorizedConv,
    FactorizedEmbedding,
    FactorizedLinear,
)
from prunekit.prune.masks import finalize, mask_modules

SparsePolicy = Literal["auto", "dense", "csr"]
FLOPS_CONTEXT = 32
NEVER_PRUNED = (
    "model was never pruned: prune it first (prunekit prune ...) or export the dense model with "
    "--dense"
)
Record = dict[str, Any]


def is_pruned(model: nn.Module) -> bool:
    """True if `model` has prunekit masks, factorized layers, or zeros in a weight of a Linear,
    Conv1D, conv, embedding or RNN."""
    if mask_modules(model) or any(isinstance(m, FACTORIZED_TYPES) for m in model.modules()):
        return True
    if has_lowrank(model):
        return True
    for m in model.modules():
        if isinstance(m, nn.RNNBase):
            names = [n for n in m._flat_weights_names if n.startswith("weight")]
        elif isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Embedding) or is_hf_conv1d(m):
            names = ["weight"]
        else:
            continue
        if any(bool((getattr(m, n) == 0).any()) for n in names):
            return True
    return False


def mask_readers(model: nn.Module) -> dict[str, str]:
    """Producer module -> its reader, as structured pruning recorded them on the masks."""
    return {name: mask.reader for name, _, _, mask in mask_modules(model) if mask.reader}


def convert_factorized(model: nn.Module) -> list[Record]:
    """Replace every FactorizedLinear / FactorizedConv / FactorizedEmbedding by its compact form
    (in place): two thin layers where k (a + b) < a b, else one dense layer."""
    records = []
    for name, m in list(model.named_modules()):
        if not isinstance(m, FACTORIZED_TYPES):
            continue
        d = m.d.detach()
        kept = (d != 0).nonzero().flatten()
        U = m.U.detach()[:, kept] * d[kept]  # (a, k)
        V = m.V.detach()[kept]  # (k, b)
        a, b, k = U.shape[0], V.shape[1], kept.numel()
        low = k > 0 and k * (a + b) < a * b
        if isinstance(m, FactorizedLinear):
            bias = None if m.bias is None else m.bias.detach()
            new = LowRankLinear(U, V, bias) if low else _dense_linear(U @ V, bias)
        elif isinstance(m, FactorizedConv):
            new = _low_rank_conv(m, U, V) if low else _dense_conv(m, U @ V)
        else:
            new = LowRankEmbedding(U, V, m.padding_idx) if low else _dense_embedding(U @ V, m)
        set_module(model, name, new)
        records.append(
            {
                "module": name, "kind": "factorized", "shape": [a, b], "rank": m.rank,
                "kept_rank": k, "as": "lowrank" if low else "dense",
                "params": k * (a + b) if low else a * b,
            }
        )  # fmt: skip
    return records


def _dense_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def _conv(m: FactorizedConv, n_in: int, n_out: int, kernel, first: bool, bias: bool) -> nn.Module:
    cls = nn.Conv1d if m.dims == 1 else nn.Conv2d
    if not first:
        return cls(n_in, n_out, kernel, bias=bias)
    return cls(n_in, n_out, kernel, m.stride, m.padding, m.dilation, bias=bias)


def _set(conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape))
        if bias is not None:
            conv.bias.copy_(bias.detach())
    return conv.eval()


def _low_rank_conv(m: FactorizedConv, U: torch.Tensor, V: torch.Tensor) -> LowRankConv:
    """conv(in -> k) with the filters V (k, in x kernel), then a 1 x 1 conv with U (out, k)."""
    k = V.shape[0]
    first = _set(_conv(m, m.in_channels, k, m.kernel_size, True, False), V, None)
    second = _conv(m, k, m.out_channels, 1, False, m.bias is not None)
    return LowRankConv(first, _set(second, U, m.bias))


def _dense_conv(m: FactorizedConv, weight: torch.Tensor) -> nn.Module:
    conv = _conv(m, m.in_channels, m.out_channels, m.kernel_size, True, m.bias is not None)
    return _set(conv, weight, m.bias)


def _dense_embedding(weight: torch.Tensor, m: FactorizedEmbedding) -> nn.Embedding:
    emb = nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=m.padding_idx)
    with torch.no_grad():
        emb.weight.copy_(weight)
    return emb


def _rnn_sparsity(rnn: nn.RNNBase) -> float:
    ws = [getattr(rnn, n).detach() for n in rnn._flat_weights_names if n.startswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in ws)
    return zeros / sum(w.numel() for w in ws)


def _choose_rnn(rnn: nn.RNNBase, policy: SparsePolicy, opts: Mapping[str, Any]):
    """(module, record): `rnn` or a LinearRNN with CSR gate matrices, whichever is chosen."""
    s = _rnn_sparsity(rnn)
    record: Record = {"kind": "dense", "sparsity": s, "dense_us": None, "sparse_us": None}
    record["ratio"] = None
    unsupported = rnn.bidirectional or getattr(rnn, "proj_size", 0) or not rnn.bias
    if policy == "dense" or unsupported or s == 0.0:
        record["reason"] = "kept dense" + (" (no LinearRNN form)" if unsupported else "")
        return rnn, record
    if policy == "csr":
        return LinearRNN.from_rnn(rnn, sparse=True), {**record, "kind": "sparse", "forced": True}
    if s < opts["min_sparsity"]:
        return rnn, {**record, "reason": f"sparsity below {opts['min_sparsity']}: not timed"}
    lrnn = LinearRNN.from_rnn(rnn, sparse=False)
    gates = {}

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if not isinstance(m, DenseLinear) or weight_sparsity(m.weight) < opts["min_sparsity"]:
            return None
        layer, gates[name] = choose_linear(
            m, batch_size=opts["batch_size"], threads=opts["threads"], repeats=opts["repeats"]
        )
        return layer

    replace_modules(lrnn, convert)
    record["gates"] = gates
    if not any(isinstance(m, SparseLinear) for m in lrnn.modules()):
        return rnn, {**record, "reason": "no gate matrix is faster in CSR"}
    shape = (opts["batch_size"], 1, rnn.input_size)
    if not rnn.batch_first:
        shape = (1, opts["batch_size"], rnn.input_size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with num_threads(opts["threads"]):
        t = median_us({"dense": lambda: rnn(x), "sparse": lambda: lrnn(x)}, repeats=opts["repeats"])
    ratio = t["dense"] / t["sparse"]
    record.update(dense_us=t["dense"], sparse_us=t["sparse"], ratio=ratio)
    if ratio >= opts["min_speedup"]:
        return lrnn.eval(), {**record, "kind": "sparse"}
    return rnn, record


def choose_sparse(model: nn.Module, policy: SparsePolicy, opts: Mapping[str, Any]) -> dict:
    """Decide dense vs CSR for every layer with zeros of a `fastest_dense` model (in place).

    Returns:
        {layer name: record} with kind ("dense"/"sparse"), sparsity, dense_us, sparse_us, ratio
        (µs per call at opts["batch_size"] rows, opts["threads"] threads; None where not timed).
    """
    records: dict[str, Record] = {}

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if isinstance(m, nn.LSTM | nn.GRU):
            new, records[name] = _choose_rnn(m, policy, opts)
            return new
        if not isinstance(m, DenseLinear):
            return None
        s = weight_sparsity(m.weight)
        if s == 0.0:
            return None
        if policy != "auto" or s < opts["min_sparsity"]:
            csr = policy == "csr"
            reason = "forced" if policy != "auto" else f"sparsity below {opts['min_sparsity']}"
            records[name] = {"kind": "sparse" if csr else "dense", "sparsity": s, "reason": reason}
            return SparseLinear.from_linear(m) if csr else m
        layer, records[name] = choose_linear(
            m,
            batch_size=opts["batch_size"],
            threads=opts["threads"],
            repeats=opts["repeats"],
            min_speedup=opts["min_speedup"],
            cold=opts["cold"],
        )
        return layer

    replace_modules(model, convert)
    return records


def _dense_reference(config: Mapping[str, Any] | None) -> Record:
    if config is None:
        return {}
    with torch.device("meta"):
        dense = build_model(config)
    return {
        "dense_params": sum(p.numel() for p in dense.parameters()),
        "dense_size_bytes": sum(p.numel() * p.element_size() for p in dense.parameters()),
        "dense_flops_per_token": flops_per_token(dense, FLOPS_CONTEXT),
    }


def summarize(model: nn.Module, config: Mapping[str, Any] | None) -> Record:
    """Size, bytes and FLOPs/token (at context FLOPS_CONTEXT) of `model` and of its dense base."""
    out: Record = {**compact_size_report(model), "flops_context_len": FLOPS_CONTEXT}
    out["flops_per_token"] = flops_per_token(model, FLOPS_CONTEXT)
    out.update(_dense_reference(config))
    if out.get("dense_flops_per_token"):
        out["flop_ratio"] = out["dense_flops_per_token"] / out["flops_per_token"]
        out["size_ratio"] = out["size_bytes"] / out["dense_size_bytes"]
    return out


def _base_config(model: nn.Module) -> dict[str, Any] | None:
    try:
        return model_config(model)
    except PrunekitError:
        return None


def compact(
    model: nn.Module,
    *,
    int8: bool = False,
    batch_size: int = 1,
    threads: int = 1,
    repeats: int = 20,
    sparse: SparsePolicy = "auto",
    dense_layout: DenseLayout = "auto",
    rnn_onednn: bool | None = None,
    consumers: Mapping[str, str] | None = None,
    min_speedup: float = 1.05,
    min_sparsity: float = 0.3,
    dense: bool = False,
    int8_policy: Int8Policy = "all",
    cold: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Return (compact copy in eval mode, manifest dict) of a pruned model (not modified).

    Args:
        model: a model with prunekit masks and/or factorized layers, or a finalized one.
        int8: also quantize (dynamic int8) the linear and recurrent layers.
        batch_size: rows per call the timings use (1 = incremental decoding).
        threads: torch threads of the timings.
        repeats: timing samples per candidate.
        sparse: "auto" (time dense vs CSR per layer), "dense" (never CSR), "csr" (always CSR
            for layers with zeros).
        dense_layout, rnn_onednn: as in `fastest_dense`.
        consumers: producer -> the layer reading its units (an RNN's last layer -> a Linear, a
            conv or an embedding -> a conv / Linear / LSTM / GRU, see
            `prunekit.prune.channels`); added to those structured pruning recorded on the
            masks (given at prune time), which apply without passing them again.
        min_speedup: dense_us / sparse_us needed to choose CSR.
        min_sparsity: layers sparser than this are timed; others stay dense untimed.
        dense: accept a model that was never pruned (exports the dense baseline).
        int8_policy: with int8, "all" layers, or only where measured "fastest" (see
            `prunekit.export.int8_choice`).
        cold: time dense vs CSR with the weights out of cache (`prunekit.export.choose`);
            None: when the model outgrows the cache (`outgrows_cache`).

    Raises:
        PrunekitError: a model without masks, factorized layers or zeros (unless `dense`), or a
            bad option.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("repeats", repeats)
    if sparse not in ("auto", "dense", "csr"):
        raise PrunekitError(f"sparse={sparse!r} is not a policy: use 'auto', 'dense' or 'csr'")
    pruned = is_pruned(model)
    if not pruned and not dense:
        raise PrunekitError(NEVER_PRUNED)
    config = _base_config(model)
    cold = outgrows_cache(model) if cold is None else cold
    consumers = {**mask_readers(model), **(consumers or {})}
    new = finalize(copy.deepcopy(model)).eval()
    pairs = tied_pairs(new)
    conv1d = convert_conv1d(new)
    lowrank = convert_lowrank(new)
    factorized = convert_factorized(new)
    structure = shrink_chains(new, consumers) + shrink_structures(new, consumers)
    structure += slice_embeddings(new) + slice_rows_cols(new)
    new = fastest_dense(
        new, dense_layout=dense_layout, rnn_onednn=rnn_onednn,
        batch_size=batch_size, threads=threads,
    )  # fmt: skip
    opts = {
        "batch_size": batch_size, "threads": threads, "repeats": repeats,
        "min_speedup": min_speedup, "min_sparsity": min_sparsity, "cold": cold,
    }  # fmt: skip
    choices = choose_sparse(new, sparse, opts)
    ties = retie(new, pairs)
    int8_choices: dict[str, Record] = {}
    if int8:
        new, int8_choices = quantize_compact(
            new, policy=int8_policy, batch_size=batch_size, threads=threads, repeats=repeats,
            cold=cold,
        )  # fmt: skip
    if type(new) is RNNLM:
        new.__class__ = CompactRNNLM
    new.requires_grad_(False)  # inference-only (and torch's RNN kernels round alike then)
    options = {
        **opts, "int8": int8, "int8_policy": int8_policy, "sparse": sparse,
        "dense_layout": dense_layout,
    }  # fmt: skip
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_config": config,
        "pruned": pruned, "options": options, "conv1d": conv1d, "structure": structure,
        "factorized": factorized, "ties": ties, "lowrank": lowrank,
        "choices": choices, "int8_choices": int8_choices, "summary": summarize(new, config),
    }  # fmt: skip
    return new.eval(), manifest
