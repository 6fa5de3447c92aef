"""Streaming batch-1 latency of a recurrent acoustic model: ms per 10 ms frame, per variant.

Any model with `init_stream(1)` and `step(feats (1, n, F), state)` (prunekit's streaming CTC
model, or the `FrameStackRNN` stand-in) is fed one 10 ms feature frame per call, as a recognizer
on a device does; one repetition times `frames` calls from a fresh state. Variants (the same
random weights; speed does not depend on their values, only on shapes, ranks and where zeros
are):

- `dense-eager` (the model as built), `dense` (`fastest_dense`: per-layer weight layout, oneDNN
  choice for the RNN): the baseline of every ratio; `int8` (prunekit's dynamic int8 of `dense`);
  `floor` (every matrix at rank 1: what a step costs besides its weights, so dense / floor
  bounds any compression's speed-up);
- per kept fraction f of the scope (every Linear and LSTM/GRU matrix): `lowrank@f` (each matrix
  at the rank that keeps f of its parameters, `compact`: two thin matmuls per gate stack),
  `sparse@f` (magnitude, unstructured; CSR where measured faster, else dense), `structured@f`
  (gate-aware removal of RNN hidden units, physically smaller layers), each also `+int8`;
- peers: `torch-int8` (torch.ao.quantization.quantize_dynamic of the model: Linear, GRU / LSTM)
  and `onnxruntime` (the stand-in's fp32 step through onnxruntime; models it cannot export are
  listed with the reason).

Variants are timed round-robin in a seeded random order per repetition (`interleaved_orders`),
medians compared within the run, one thread count at a time (1 thread first).
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.bench.latency import interleaved_orders
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export.compact import compact
from prunekit.export.fast_dense import fastest_dense
from prunekit.export.int8_choice import quantize_compact
from prunekit.export.quantize import torch_dynamic_int8
from prunekit.export.size import compact_size_report
from prunekit.export.timing import check_positive_int, num_threads, percentiles
from prunekit.lowrank.factor import factorize, select_matrices
from prunekit.lowrank.svd import fraction_plan
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_
from prunekit.prune.size import count_params, sparsity_for_size

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
SCOPE = ScopeConfig(module_types=("Linear", "LSTM", "GRU"))
METHODS = ("lowrank", "sparse", "structured")


def _check_streaming(model: Any) -> None:
    if not (
        callable(getattr(model, "init_stream", None)) and callable(getattr(model, "step", None))
    ):
        raise PrunekitError(
            f"{type(model).__name__} has no init_stream/step: the streaming benchmark needs a "
            "streaming model (prunekit's CTC model with streaming: true, or FrameStackRNN)"
        )


def rnn_consumers(model: nn.Module) -> dict[str, str]:
    """{RNN name: the first Linear after it reading its output width} (for structured pruning)."""
    consumers, pending = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.LSTM | nn.GRU):
            pending.append((name, m.hidden_size * (2 if m.bidirectional else 1)))
        elif isinstance(m, nn.Linear) and pending and m.in_features == pending[-1][1]:
            consumers[pending.pop()[0]] = name
    return consumers


def compressed(base: nn.Module, method: str, fraction: float) -> tuple[nn.Module, dict]:
    """A copy of `base` compressed by `method` to keep `fraction` of the scope's parameters
    (masks or factors attached, not yet compact) and how it was made."""
    model = copy.deepcopy(base)
    scope_params = sum(m.shape[0] * m.shape[1] for m in select_matrices(model, SCOPE))
    info: dict[str, Any] = {"method": method, "fraction": fraction, "scope_params": scope_params}
    if method == "lowrank":
        plan = fraction_plan(select_matrices(model, SCOPE), fraction)
        factorize(model, plan)
        info["ranks"] = plan
    else:
        args = {"consumers": rnn_consumers(model)} if method == "structured" else {}
        kind = "unstructured" if method == "sparse" else "structured"
        scope = SCOPE if method == "sparse" else ScopeConfig(module_types=("LSTM", "GRU"))
        target = count_params(model) - round((1.0 - fraction) * scope_params)
        try:
            s = sparsity_for_size(model, target, scope, method=kind, method_args=args)
        except PrunekitError:
            s, info["note"] = 0.99, "size not reachable: pruned as far as the method goes"
        cfg = PruneConfig(method=kind, method_args=args, schedule=OneShot(sparsity=s), scope=scope)
        prune_(model, cfg)
        info["sparsity"] = s
    info["params"] = count_params(model)
    return model.eval(), info


def _onnx_peer(base: nn.Module, threads: int) -> tuple[Any, str | None]:
    from prunekit.bench.stream_models import FrameStackRNN, OrtStream

    if not isinstance(base, FrameStackRNN):
        return None, f"{type(base).__name__}'s streaming step (convolution state) is not exported"
    try:
        return OrtStream(base, threads=threads), None
    except ImportError as exc:
        return None, f"onnxruntime is not installed ({exc})"


def build_stream_variants(
    base: nn.Module, fractions: Sequence[float], *, threads: int = 1, repeats: int = 10,
    progress: Progress | None = None, int8_policy: str = "all",
) -> tuple[dict[str, Any], dict[str, dict]]:  # fmt: skip
    """The models to compare (see the module docstring) and how each was made; `int8_policy` of
    the compressed `+int8` variants: "all" layers int8, or only where measured "fastest"."""
    say = progress or log.info
    opts = {"batch_size": 1, "threads": threads, "repeats": repeats}
    dense = fastest_dense(base, batch_size=1, threads=threads, repeats=repeats)
    variants: dict[str, Any] = {"dense-eager": base, "dense": dense}
    variants["int8"], choices = quantize_compact(dense, policy="all", **opts)
    variants["torch-int8"] = torch_dynamic_int8(base)
    info: dict[str, dict] = {n: {"method": "dense"} for n in variants}
    info["int8"]["int8_choices"] = choices
    info["torch-int8"]["method"] = "torch.ao.quantization.quantize_dynamic"
    floor = factorize(copy.deepcopy(base), dict.fromkeys(_names(base), 1))
    variants["floor"], _ = compact(floor, **opts)
    info["floor"] = {"method": "every Linear and gate stack at rank 1: the cost of all but the "
                     "weights (no compression of these matrices can beat it)"}  # fmt: skip
    ort, why = _onnx_peer(base, threads)
    if ort is not None:
        variants["onnxruntime"], info["onnxruntime"] = ort, {"method": "onnxruntime fp32"}
    else:
        info["onnxruntime (not run)"] = {"method": "onnxruntime", "note": why}
    for f in fractions:
        for method in METHODS:
            say(f"{method}: keep {f:g} of the scope, compact")
            model, meta = compressed(base, method, f)
            fp32, manifest = compact(model, **opts)
            name = f"{method}@{f:g}"
            variants[name] = fp32
            info[name] = {**meta, "choices": manifest["choices"], "lowrank": manifest["lowrank"]}
            variants[f"{name}+int8"], choices = quantize_compact(fp32, policy=int8_policy, **opts)
            info[f"{name}+int8"] = {**meta, "int8_choices": choices}
    return variants, info


def _names(model: nn.Module) -> list[str]:
    return [m.name for m in select_matrices(model, SCOPE)]


def _stream_once(model: Any, frames: list[Tensor]) -> float:
    """ms per frame of feeding `frames` (each (1, 1, F)) one call at a time from a fresh state."""
    state = model.init_stream(1)
    start = time.perf_counter()
    for f in frames:
        _, state = model.step(f, state)
    return (time.perf_counter() - start) * 1e3 / len(frames)


def _size(model: Any, base: nn.Module) -> dict[str, int]:
    return compact_size_report(model if isinstance(model, nn.Module) else base)


def compare_streaming(
    variants: Mapping[str, Any], *, baseline: str, n_mels: int, threads: Sequence[int] = (1,),
    frames: int = 100, repeats: int = 20, warmup: int = 2, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """ms per 10 ms frame of every variant, interleaved, with speed-ups over `baseline`.

    Returns:
        {"baseline", "frames", "repeats", "threads", "variants": {name: {"flops_per_output_frame",
        "flop_ratio", "size"}}, "by_threads": {str(n): {name: {"median_ms", "p10_ms", "p90_ms",
        "samples_ms", "speedup", "real_time_factor"}}}}.
    """
    if baseline not in variants:
        raise PrunekitError(f"baseline={baseline!r} is not a variant: name one of {list(variants)}")
    for m in variants.values():
        _check_streaming(m)
    check_positive_int("frames", frames)
    check_positive_int("repeats", repeats)
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, frames, n_mels, generator=g)
    chunks = [feats[:, i : i + 1] for i in range(frames)]
    flops = {n: flops_per_token(m, 1) for n, m in variants.items()}
    base_model = variants[baseline]
    result: dict[str, Any] = {
        "baseline": baseline, "frames": frames, "repeats": repeats, "threads": list(threads),
        "variants": {
            n: {"flops_per_output_frame": flops[n], "flop_ratio": flops[baseline] / flops[n],
                "size": _size(m, base_model)}
            for n, m in variants.items()
        },
        "by_threads": {},
    }  # fmt: skip
    names = list(variants)
    for n_threads in threads:
        samples: dict[str, list[float]] = {n: [] for n in names}
        with num_threads(n_threads), torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    _stream_once(variants[name], chunks)
            for order in interleaved_orders(names, repeats, seed):
                for name in order:
                    samples[name].append(_stream_once(variants[name], chunks))
        base = statistics.median(samples[baseline])
        rows = {}
        for name, s in samples.items():
            p10, med, p90 = percentiles(s)
            rows[name] = {"median_ms": med, "p10_ms": p10, "p90_ms": p90, "samples_ms": s,
                          "speedup": base / med, "real_time_factor": med / 10.0}  # fmt: skip
        result["by_threads"][str(n_threads)] = rows
    return result


def stream_targets(result: Mapping[str, Any], fractions: Sequence[float]) -> list[dict[str, Any]]:
    """The issue's targets against the first thread count's speed-ups."""
    first = str(result["threads"][0])
    rows: list[dict[str, Any]] = []

    def row(name: str) -> tuple[float, float]:
        return result["by_threads"][first][name]["speedup"], result["variants"][name]["flop_ratio"]

    for f in fractions:
        for method in ("lowrank", "structured"):
            up, ratio = row(f"{method}@{f:g}")
            rows.append({"target": f"{method}@{f:g}: speed-up >= 0.8 x FLOP ratio ({ratio:.2f})",
                         "measured": up / ratio, "met": up / ratio >= 0.8})  # fmt: skip
        up, _ = row(f"sparse@{f:g}")
        rows.append({"target": f"sparse@{f:g} never slower than dense", "measured": up,
                     "met": up >= 1.0})  # fmt: skip
    small = min(fractions)
    if "floor" in result["variants"]:
        rows.append({"target": "bound: dense / floor (no compression of the matrices beats it)",
                     "measured": row("floor")[0], "met": None})  # fmt: skip
    up, _ = row(f"lowrank@{small:g}+int8")
    rows.append({"target": f"lowrank@{small:g}+int8 >= 10x the fastest dense path (at f=0.1)",
                 "measured": up, "met": up >= 10.0})  # fmt: skip
    return rows


def run_stream_bench(
    model: nn.Module, *, fractions: Sequence[float] = (0.1,), threads: Sequence[int] = (1, 2),
    frames: int = 100, repeats: int = 20, progress: Progress | None = None,
    int8_policy: str = "all",
) -> dict[str, Any]:  # fmt: skip
    """Build every variant of the streaming `model` and time them; JSON-able result."""
    _check_streaming(model)
    for f in fractions:
        if not 0.0 < f < 1.0:
            raise PrunekitError(f"fraction {f} must be in (0, 1): pass e.g. --sizes 0.1")
    say = progress or log.info
    n_mels = _n_mels(model)
    variants, info = build_stream_variants(
        model, fractions, threads=threads[0], repeats=repeats, progress=progress,
        int8_policy=int8_policy,
    )  # fmt: skip
    say(f"timing {len(variants)} variants at threads {list(threads)}")
    timed = compare_streaming(
        variants, baseline="dense", n_mels=n_mels, threads=threads, frames=frames,
        repeats=repeats,
    )  # fmt: skip
    return {"fractions": list(fractions), "int8_policy": int8_policy, "variants_info": info,
            "stream": timed,
            "targets": stream_targets(timed, fractions)}  # fmt: skip


def _n_mels(model: nn.Module) -> int:
    """Feature width of a streaming model: `config.n_mels`, else its `feat_mean` buffer."""
    config = getattr(model, "config", None)
    if isinstance(getattr(config, "n_mels", None), int):
        return config.n_mels
    mean = getattr(model, "feat_mean", None)
    if isinstance(mean, Tensor):
        return int(mean.numel())
    raise PrunekitError(
        f"cannot tell the feature width of {type(model).__name__}: give it config.n_mels"
    )


def stream_markdown(result: Mapping[str, Any], machine: Mapping[str, Any], command: str) -> str:
    """The Markdown report of `run_stream_bench`: one row per variant, then the targets."""
    timed = result["stream"]
    threads = [str(n) for n in timed["threads"]]
    head = ["variant", f"ms / 10 ms frame ({threads[0]} thr)", "speed-up", "FLOP ratio",
            "speed-up / FLOP ratio", "size bytes"]  # fmt: skip
    head += [f"ms ({n} thr)" for n in threads[1:]] + [f"speed-up ({n} thr)" for n in threads[1:]]
    lines = [
        f"# Streaming latency: {result['model']}", "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu', 'unknown')}, {machine.get('cores', '?')} cores, torch "
        f"{machine.get('torch', '?')}, commit {machine.get('git_commit', '?')}  ",
        f"Model: `{result['config']}` (random weights). Batch 1, one 10 ms feature frame per "
        f"step() call, {timed['frames']} frames per repetition from a fresh state, "
        f"{timed['repeats']} repetitions, variants interleaved. Baseline: `{timed['baseline']}`.",
        "", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]  # fmt: skip
    for name, v in timed["variants"].items():
        r0 = timed["by_threads"][threads[0]][name]
        cells = [f"`{name}`", f"{r0['median_ms']:.3f} ({r0['p10_ms']:.3f}-{r0['p90_ms']:.3f})",
                 f"{r0['speedup']:.2f}x", f"{v['flop_ratio']:.2f}x",
                 f"{r0['speedup'] / v['flop_ratio']:.2f}", f"{v['size']['size_bytes']:,}"]  # fmt: skip
        rest = [timed["by_threads"][n][name] for n in threads[1:]]
        cells += [f"{r['median_ms']:.3f}" for r in rest] + [f"{r['speedup']:.2f}x" for r in rest]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- `{n}`: {i['note']}" for n, i in result["variants_info"].items() if "note" in i]
    lines += ["", "## Targets (first thread count)", "", "| target | measured | met |",
              "|---|---:|---|"]  # fmt: skip
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']:.2f} | {met} |")
    lines += ["", *notes, "", "Timings are wall-clock medians; compare variants only within one "
              "run, on an idle machine.", ""]  # fmt: skip
    return "\n".join(lines)
