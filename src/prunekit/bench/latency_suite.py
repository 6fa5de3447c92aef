"""`prunekit bench latency`: every deployment variant of one LM, measured in one interleaved run.

For a seed-004-shaped Transformer (vocab 8192, d 512, 6 layers, 8 heads, FFN 2048) or a 2-layer
512-unit LSTM LM (vocab 8192), built with random weights (the values of the weights do not change
the speed of dense, CSR or int8 kernels; only where the zeros are does, and magnitude pruning of
random weights puts them where pruning trained weights would, unstructured), the variants are:

- `dense-eager`: the model as built; `dense-layout`: `fastest_dense` (pre-transposed or row-major
  weights per layer, oneDNN off for LSTM decoding when that is faster); `dense`: that model run by
  `prunekit.runtime.fast_decoder` (a TorchScript decode step for Transformers; an RNN LM's own
  decode step, where `dense-layout` is not listed separately): the baseline of every ratio;
- `int8`: prunekit's dynamic int8 of the dense model (`quantize_compact(policy="all")`: every
  Linear / LSTM, per-channel weights); `torch-int8`: torch's `quantize_dynamic`, run eagerly as a
  user of torch would;
- per size s (kept fraction of the pruned scope): `masked@s` (prunekit masks attached, 1 - s
  unstructured), `torch-prune@s` (torch.nn.utils.prune, same amount), and the compact exports
  `structured@s`, `factorized@s`, `unstructured@s`, each also `+int8`; for the LSTM LM also
  `lowrank@s` (+int8): every Linear and LSTM gate stack factored (W = U V, `prunekit.lowrank`)
  at the rank keeping s of its parameters, run as two thin matmuls per gate stack. Every prunekit
  variant decodes through `fast_decoder`; the peers and `masked@s` through their own eager modules.

Decoding (batch 1, KV cache / recurrent state, ms/token) and batched scoring (tokens/s) are timed
round-robin over the variants (`prunekit.bench.latency.compare_variants` and `compare_scoring`),
at each thread count. A table of the sparsity from which CSR beats dense per layer shape comes
with it (`prunekit.export.sparse_break_even`).
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from prunekit.bench.latency import (
    _EvalMode,
    _tokens,
    compare_variants,
    interleaved_orders,
    latency_markdown,
)
from prunekit.bench.lowrank_variant import lowrank_variant
from prunekit.errors import PrunekitError
from prunekit.export.choose import DEFAULT_SPARSITIES, sparse_speedup_curve
from prunekit.export.compact import compact
from prunekit.export.fast_dense import fastest_dense
from prunekit.export.int8_choice import quantize_compact
from prunekit.export.layers import LowRankLinear
from prunekit.export.quantize import torch_dynamic_int8
from prunekit.export.replace import replace_modules
from prunekit.export.shrink import is_plain_linear
from prunekit.export.timing import check_positive_int, num_threads, percentiles
from prunekit.models import build_model, model_config
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_, resolve_scope
from prunekit.prune.size import count_params, sparsity_for_size
from prunekit.runtime import fast_decoder

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

SUITE_MODELS: dict[str, dict[str, Any]] = {
    "transformer": {
        "arch": "transformer", "vocab_size": 8192, "d_model": 512, "n_layer": 6, "n_head": 8,
        "d_ff": 2048, "dropout": 0.0, "max_rel_pos": 64,
    },
    "lstm": {
        "arch": "rnn", "cell": "lstm", "vocab_size": 8192, "d_embed": 512, "d_hidden": 512,
        "n_layer": 2, "dropout": 0.0,
    },
}  # fmt: skip
METHODS = ("structured", "factorized", "unstructured")


def suite_scope(arch: str, method: str) -> ScopeConfig:
    """What each method prunes: the layers that cost time (never the embedding lookup).

    Structured pruning of a Transformer leaves `lm_head` alone (its rows are vocabulary entries);
    an LSTM's `lm_head` loses the columns of removed units. Factorization covers the Linears only
    (an LSTM LM's `lm_head`), unstructured pruning every Linear and LSTM weight.
    """
    if method == "structured":
        return ScopeConfig(module_types=("Linear", "LSTM", "GRU"), exclude_output=arch != "rnn")
    if method == "factorized":
        return ScopeConfig(module_types=("Linear",))
    return ScopeConfig(module_types=("Linear", "LSTM", "GRU"))


def prune_to_size(model: nn.Module, method: str, size: float) -> tuple[nn.Module, dict]:
    """A masked copy of `model` keeping `size` of its scope's parameters (magnitude, one shot).

    Returns:
        (masked copy, {"method", "size", "sparsity", "scope_params", "params"}).
    """
    scope = suite_scope(model_config(model)["arch"], method)
    scope_params = sum(t.param.numel() for t in resolve_scope(model, scope))
    target = count_params(model) - round((1.0 - size) * scope_params)
    note = None
    try:
        s = sparsity_for_size(model, target, scope, method=method)
    except PrunekitError:  # tiny models: rank >= 1 per factorized layer
        s, note = 0.999999, "size not reachable: pruned as far as the method goes"
    masked = copy.deepcopy(model)
    prune_(masked, PruneConfig(method=method, schedule=OneShot(sparsity=s), scope=scope))
    info = {"method": method, "size": size, "sparsity": s, "scope_params": scope_params}
    if note:
        info["note"] = note
    return masked.eval(), {**info, "params": count_params(masked), "scope": scope.to_dict()}


def torch_prune_peer(model: nn.Module, amount: float) -> nn.Module:
    """The peer: torch.nn.utils.prune.l1_unstructured(amount) on every Linear and RNN weight."""
    peer = copy.deepcopy(model).eval()
    for m in peer.modules():
        names = ["weight"] if isinstance(m, nn.Linear) else []
        if isinstance(m, nn.LSTM | nn.GRU):
            names = [n for n in m._flat_weights_names if n.startswith("weight")]
        for n in names:
            torch_prune.l1_unstructured(m, n, amount=amount)
    return peer


def overhead_floor(model: nn.Module) -> nn.Module:
    """`model` with every Linear at rank 1 (`LowRankLinear`): decoding it costs what a decode step
    costs besides reading weights (attention over the cache, LayerNorm, activations, dispatch).
    dense ms / floor ms bounds the speed-up any compression of the Linears can reach."""
    floor = copy.deepcopy(model)
    replace_modules(
        floor, lambda _, m: LowRankLinear.from_linear(m, 1) if is_plain_linear(m) else None
    )
    return floor.eval()


def build_variants(
    base: nn.Module, sizes: Sequence[float], *, threads: int = 1, repeats: int = 20,
    progress: Progress | None = None,
) -> tuple[dict[str, nn.Module], dict[str, dict]]:  # fmt: skip
    """The models to compare (see the module docstring) and how each was made."""
    say = progress or log.info
    layout = fastest_dense(base, batch_size=1, threads=threads)
    opts = {"batch_size": 1, "threads": threads, "repeats": repeats}
    int8, int8_choices = quantize_compact(layout, policy="all", **opts)
    variants = {"dense-eager": base, "dense-layout": layout, "dense": fast_decoder(layout)}
    if variants["dense"] is layout:  # no runtime beyond the model's own decode_step (RNN LMs)
        del variants["dense-layout"]
    variants.update({"int8": fast_decoder(int8), "torch-int8": torch_dynamic_int8(base)})
    info: dict[str, dict] = {name: {"method": "dense"} for name in variants}
    if variants["dense"] is not layout:
        variants["floor"] = fast_decoder(overhead_floor(base))
        info["floor"] = {"method": "every Linear at rank 1 (cost of all but the weights)"}
    info["int8"]["int8_choices"] = int8_choices
    for size in sizes:
        for method in METHODS:
            say(f"pruning ({method}, keep {size:g} of the scope) and exporting")
            masked, meta = prune_to_size(base, method, size)
            fp32, manifest = compact(masked, **opts)
            int8, choices = quantize_compact(fp32, policy="all", **opts)
            name = f"{method}@{size:g}"
            variants[name], info[name] = (
                fast_decoder(fp32),
                {**meta, "summary": manifest["summary"]},
            )
            variants[f"{name}+int8"] = fast_decoder(int8)
            info[f"{name}+int8"] = {**meta, "int8_choices": choices}
            info[name]["choices"] = manifest["choices"]
            if method == "unstructured":
                variants[f"masked@{size:g}"] = masked
                info[f"masked@{size:g}"] = meta
                variants[f"torch-prune@{size:g}"] = torch_prune_peer(base, meta["sparsity"])
                info[f"torch-prune@{size:g}"] = {"method": "torch.nn.utils.prune", **meta}
        if model_config(base)["arch"] == "rnn":  # seed 000: the LSTM gate stacks factored too
            fp32, meta = lowrank_variant(base, size, opts)
            variants[f"lowrank@{size:g}"], info[f"lowrank@{size:g}"] = fast_decoder(fp32), meta
            int8, choices = quantize_compact(fp32, policy="all", **opts)
            variants[f"lowrank@{size:g}+int8"] = fast_decoder(int8)
            info[f"lowrank@{size:g}+int8"] = {**meta, "int8_choices": choices}
    return variants, info


def compare_scoring(
    variants: Mapping[str, nn.Module], *, baseline: str, threads: Sequence[int] = (1, 2),
    batch_size: int = 4, seq_len: int = 32, repeats: int = 20, warmup: int = 2, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Batched full-sequence scoring throughput, variants interleaved, speed-ups over `baseline`.

    Returns:
        {"batch_size", "seq_len", "repeats", "by_threads": {str(n): {name: {"median_tokens_per_s",
        "p10_tokens_per_s", "p90_tokens_per_s", "speedup" (variant median / baseline median)}}}}.
    """
    check_positive_int("repeats", repeats)
    names = list(variants)
    idx = _tokens(variants[baseline], batch_size, seq_len, seed)
    out: dict[str, Any] = {"batch_size": batch_size, "seq_len": seq_len, "repeats": repeats}
    out["by_threads"] = {}
    for n_threads in threads:
        samples: dict[str, list[float]] = {n: [] for n in names}
        with num_threads(n_threads), torch.inference_mode(), _EvalMode(list(variants.values())):
            for name in names:
                for _ in range(warmup):
                    variants[name](idx)
            for order in interleaved_orders(names, repeats, seed):
                for name in order:
                    start = time.perf_counter()
                    variants[name](idx)
                    samples[name].append(idx.numel() / (time.perf_counter() - start))
        base = statistics.median(samples[baseline])
        row = {}
        for name, s in samples.items():
            p10, med, p90 = percentiles(s)
            row[name] = {"median_tokens_per_s": med, "p10_tokens_per_s": p10}
            row[name].update(p90_tokens_per_s=p90, speedup=med / base)
        out["by_threads"][str(n_threads)] = row
    return out


def layer_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """Distinct (out, in) shapes of the Linear weights and RNN gate matrices of `model`."""
    shapes: list[tuple[int, int]] = []
    for m in model.modules():
        ws = [m.weight] if isinstance(m, nn.Linear) else []
        if isinstance(m, nn.RNNBase):
            ws = [getattr(m, n) for n in m._flat_weights_names if n.startswith("weight")]
        for w in ws:
            if tuple(w.shape) not in shapes:
                shapes.append(tuple(w.shape))
    return shapes


def break_even_table(
    shapes: Sequence[tuple[int, int]], threads: Sequence[int], *, batch_size: int = 1,
    repeats: int = 10,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per shape and thread count: CSR speed-up over dense at each sparsity, and the break-even
    (lowest grid sparsity from which CSR wins at every higher one; None if it never does). Timed
    cold (weights out of cache, as in a decode step of the suite's models)."""
    rows = []
    for out_f, in_f in shapes:
        for n in threads:
            curve = sparse_speedup_curve(out_f, in_f, batch_size, n, repeats=repeats, cold=True)
            wins = None
            for s in sorted(curve, reverse=True):
                if curve[s] <= 1.0:
                    break
                wins = s
            rows.append(
                {"shape": [out_f, in_f], "threads": n, "batch_size": batch_size,
                 "speedup_by_sparsity": {str(s): r for s, r in curve.items()}, "wins_from": wins}
            )  # fmt: skip
    return rows


def run_suite(
    model: str, *, sizes: Sequence[float] = (0.1,), threads: Sequence[int] = (1, 2),
    repeats: int = 20, context: int = 32, steps: int = 8, scoring_batch: int = 4,
    scoring_len: int = 16, seed: int = 0, progress: Progress | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build every variant of `model` ("transformer" or "lstm") and time them (see the module
    docstring); `config` replaces the model's default shape (e.g. a tiny one for tests).

    Returns:
        A JSON-able dict: model, config, weights, sizes, variants_info, decode (see
        `compare_variants`), scoring (`compare_scoring`), break_even, targets.
    """
    if model not in SUITE_MODELS:
        raise PrunekitError(f"model={model!r} is unknown: choose one of {sorted(SUITE_MODELS)}")
    for s in sizes:
        if not 0.0 < s < 1.0:
            raise PrunekitError(f"size {s} must be in (0, 1): pass e.g. --sizes 0.1")
    say = progress or log.info
    torch.manual_seed(seed)
    config = dict(config or SUITE_MODELS[model])
    base = build_model(config).eval()
    variants, info = build_variants(
        base, sizes, threads=threads[0], repeats=repeats, progress=progress
    )
    say(f"timing decoding of {len(variants)} variants at threads {list(threads)}")
    decode = compare_variants(
        variants, baseline="dense", threads=threads, context=context, steps=steps, repeats=repeats
    )
    say("timing batched scoring")
    scoring = compare_scoring(
        variants, baseline="dense", threads=threads, batch_size=scoring_batch,
        seq_len=scoring_len, repeats=repeats,
    )  # fmt: skip
    say("timing the dense vs CSR break-even per layer shape")
    table = break_even_table(layer_shapes(base), threads)
    result = {
        "model": model, "config": config, "weights": "random init (seed "
        f"{seed}); weight values do not change kernel speed", "sizes": list(sizes),
        "variants_info": info, "decode": decode, "scoring": scoring, "break_even": table,
    }  # fmt: skip
    result["targets"] = check_targets(result)
    return result


def _decode_row(result: Mapping[str, Any], name: str) -> tuple[float, float | None]:
    """(1st-thread-count decode speed-up, FLOP ratio) of a variant."""
    first = str(result["decode"]["threads"][0])
    return (
        result["decode"]["by_threads"][first][name]["speedup"],
        result["decode"]["variants"][name]["flop_ratio"],
    )


def check_targets(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against the measured decode speed-ups at the first thread count."""
    rows: list[dict[str, Any]] = []

    def add(target: str, measured: float, met: bool | None) -> None:
        rows.append({"target": target, "measured": measured, "met": met})

    sizes = result["sizes"]
    low = ("lowrank",) if f"lowrank@{min(sizes):g}" in result["decode"]["variants"] else ()
    for size in sizes:
        for method in ("structured", "factorized", *low):
            up, flops = _decode_row(result, f"{method}@{size:g}")
            add(f"{method}@{size:g}: speed-up >= 0.8 x FLOP ratio ({flops:.2f})",
                up / flops, up / flops >= 0.8)  # fmt: skip
        up, _ = _decode_row(result, f"unstructured@{size:g}")
        add(f"unstructured@{size:g} never slower than dense (speed-up >= 1)", up, up >= 1.0)
    up, _ = _decode_row(result, "int8")
    add("int8 >= 3x over fp32 dense (whole decode step)", up, up >= 3.0)
    small = min(sizes)
    for method in (*METHODS, *low):
        up, _ = _decode_row(result, f"{method}@{small:g}+int8")
        add(f"{method}@{small:g}+int8 >= 10x (target at size 0.1)", up, up >= 10.0)
    if any(abs(s - 0.1) < 1e-9 for s in sizes):
        up, _ = _decode_row(result, "unstructured@0.1")
        add("unstructured >= 2.5x at 90 % sparsity", up, up >= 2.5)
    if "floor" in result["decode"]["variants"]:
        add("bound: dense / floor (no compression of the Linears can beat it)",
            _decode_row(result, "floor")[0], None)  # fmt: skip
    for peer in ("torch-int8", *(f"torch-prune@{s:g}" for s in sizes)):
        add(f"peer {peer} (for comparison)", _decode_row(result, peer)[0], None)
    return rows


def _fmt_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _scoring_markdown(scoring: Mapping[str, Any]) -> list[str]:
    threads = list(scoring["by_threads"])
    head = ["variant"] + [f"tokens/s ({n} thr)" for n in threads]
    head += [f"speed-up ({n} thr)" for n in threads]
    lines = [
        "## Batched scoring", "",
        f"{scoring['batch_size']} x {scoring['seq_len']} tokens per call, "
        f"{scoring['repeats']} repetitions, variants interleaved; the compact variants were "
        "tuned for batch-1 decoding.", "", _fmt_row(head),
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]  # fmt: skip
    for name in scoring["by_threads"][threads[0]]:
        rows = [scoring["by_threads"][n][name] for n in threads]
        cells = [f"`{name}`"] + [f"{r['median_tokens_per_s']:,.0f}" for r in rows]
        lines.append(_fmt_row(cells + [f"{r['speedup']:.2f}x" for r in rows]))
    return lines + [""]


def _break_even_markdown(table: Sequence[Mapping[str, Any]]) -> list[str]:
    grid = [str(s) for s in DEFAULT_SPARSITIES]
    head = ["shape (out, in)", "threads", "CSR wins from"] + [f"s={g}" for g in grid]
    lines = [
        "## Dense vs CSR break-even per layer shape (batch 1)", "",
        "CSR speed-up over the faster dense layout (> 1: CSR faster), random unstructured zeros, "
        "weights read from memory on every call (cold, as in a decode step of a model larger "
        "than the cache). "
        "'CSR wins from' is the lowest sparsity from which CSR is faster at every higher one.",
        "", _fmt_row(head), "|" + "|".join(["---"] * 3 + ["---:"] * len(grid)) + "|",
    ]  # fmt: skip
    for r in table:
        wins = "never" if r["wins_from"] is None else f"{r['wins_from']:.2f}"
        cells = [f"{r['shape'][0]} x {r['shape'][1]}", str(r["threads"]), wins]
        lines.append(_fmt_row(cells + [f"{r['speedup_by_sparsity'][g]:.2f}" for g in grid]))
    return lines + [""]


def suite_markdown(result: Mapping[str, Any], machine: Mapping[str, Any], command: str) -> str:
    """The Markdown report of `run_suite`: decode table, targets, scoring, break-even."""
    decode = latency_markdown(result["decode"], machine, command).replace(
        "# Decode latency", "## Decode latency", 1
    )
    lines = [
        f"# Latency benchmark: {result['model']}", "",
        f"Model: `{result['config']}`, {result['weights']}. Sizes are the kept fraction of each "
        "method's pruning scope (structured: heads + FFN units of a Transformer, LSTM units + "
        "lm_head columns; factorized: the Linears; unstructured: every Linear and LSTM weight). "
        "Baseline `dense` = the fastest dense path (per-layer weight layout, oneDNN off for "
        "LSTM decoding where faster, and for a Transformer the TorchScript decode runtime "
        "`prunekit.runtime.fast_decoder` that every prunekit variant uses too); the peers "
        "(`torch-int8`, `torch-prune@s`) and `masked@s` run eagerly. CSR uses int32 indices. "
        "1-thread figures first.", "",
        decode, "## Targets (first thread count)", "",
        _fmt_row(["target", "measured", "met"]), "|---|---:|---|",
    ]  # fmt: skip
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(_fmt_row([t["target"], f"{t['measured']:.2f}", met]))
    lines.append("")
    lines += _scoring_markdown(result["scoring"])
    lines += _break_even_markdown(result["break_even"])
    lines += _variants_markdown(result["variants_info"])
    return "\n".join(lines)


def _variants_markdown(info: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "## How each variant was made", "",
        _fmt_row(["variant", "method", "scope sparsity", "CSR layers", "int8 kept fp32"]),
        "|---|---|---:|---|---|",
    ]  # fmt: skip
    for name, meta in info.items():
        choices = meta.get("choices") or {}
        csr = sum(r.get("kind") == "sparse" for r in choices.values())
        int8 = meta.get("int8_choices") or {}
        fp32 = sum(r.get("kind") in ("fp32", "csr") for r in int8.values())
        s = meta.get("sparsity")
        cells = [f"`{name}`", str(meta.get("method")), "-" if s is None else f"{s:.3f}"]
        cells += [f"{csr} of {len(choices)} with zeros" if choices else "-"]
        cells += [f"{fp32} of {len(int8)} timed" if int8 else "-"]
        lines.append(_fmt_row(cells))
    lines += [
        "",
        "Timings are wall-clock medians on a possibly shared machine: compare variants only "
        "within one run. When other processes use the cores, multi-threaded kernels (CSR most) "
        "wait for them, which shows as very slow 2-thread figures.",
        "",
    ]
    return lines
