"""`prunekit bench foreign`: models prunekit did not build, pruned, compacted, saved, loaded, timed.

For each model of `prunekit.bench.foreign_models` (Hugging Face GPT-2, a user's LSTM LM, a Conv1d
+ GRU CTC model, Hugging Face Wav2Vec2ForCTC) and each method (unstructured, structured,
factorized; each also with int8), one-shot magnitude pruning to `sparsity` of the scope, then
`compact`, gives one row:

- parameters: `count_params` of the pruned model vs the parameters the compact model stores
  (`compact_size_report`: CSR values, int8 entries, tied tensors once) and its bytes;
- outputs: max |compact - pruned| logits on a batch of 2 (fp32: must match to float rounding);
- save / load: `save_compact`, then `load_compact(folder, model=<a freshly built dense model>)`,
  logits compared with the compact model's (bit-exact expected);
- FLOP ratio: FLOPs of the timed call, dense / variant (`prunekit.eval.flops_trace`);
- batch-1 speed: decoding (ms/token, after a 64-token context) for the LMs, one utterance for
  the acoustic models, every variant timed interleaved in a seeded random order per repetition
  (`prunekit.bench.latency.interleaved_orders`), medians, 1 thread first; speed-up over the
  fastest dense path (`fastest_dense` of the same model) measured in the same run. GPT-2 decodes
  through `prunekit.runtime.gpt2.FastGPT2Decoder` (its dense baseline too); its own eager
  decoding is timed as `dense_eager` for reference.

Structured pruning gives each model's `consumers` (those prunekit cannot guess); factorized
pruning leaves the recurrent layers out (no low-rank gates yet).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.bench.foreign_models import Spec, spec
from prunekit.bench.latency import interleaved_orders
from prunekit.eval.flops_trace import call_flops
from prunekit.export import compact_size_report, fastest_dense, load_compact, save_compact
from prunekit.export.compact import compact
from prunekit.export.timing import num_threads, percentiles
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, count_params, prune_
from prunekit.prune.api import logits_of

METHODS = ("unstructured", "structured", "factorized")
GPT2_TARGET = 0.8  # structured / factorized GPT-2: speed-up >= 0.8 x FLOP ratio


def pruned(sp: Spec, method: str, sparsity: float) -> nn.Module:
    """A fresh `sp` model, one-shot magnitude-pruned by `method` to `sparsity` of its scope."""
    model = sp.build()
    scope = ScopeConfig(exclude=list(sp.factorized_exclude)) if method == "factorized" else None
    args = {"consumers": sp.consumers} if method == "structured" and sp.consumers else {}
    cfg = PruneConfig(
        method=method, schedule=OneShot(sparsity=sparsity), method_args=args,
        scope=scope or ScopeConfig(),
    )  # fmt: skip
    return prune_(model, cfg).eval()


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return logits_of(model(x)).float()


def _round_trip(sp: Spec, small: nn.Module, manifest: dict, x: torch.Tensor) -> float:
    """max |loaded - compact| after save_compact + load_compact into a fresh dense model."""
    with tempfile.TemporaryDirectory() as tmp:
        save_compact(small, manifest, Path(tmp) / "export")
        loaded = load_compact(Path(tmp) / "export", model=sp.build())
    return float((_logits(loaded, x) - _logits(small, x)).abs().max())


def check_variant(
    sp: Spec, masked: nn.Module, small: nn.Module, manifest: dict, x: torch.Tensor
) -> dict[str, Any]:
    """The correctness columns of one compact variant (see the module docstring)."""
    ref = _logits(masked, x)
    size = compact_size_report(small)
    return {
        "params_counted": count_params(masked),
        "params_stored": size["params"],
        "size_bytes": size["size_bytes"],
        "max_diff": float((_logits(small, x) - ref).abs().max()),
        "ref_scale": float(ref.abs().max()),
        "round_trip_diff": _round_trip(sp, small, manifest, x),
        "structure": sorted({r["kind"] for r in manifest["structure"]}),
    }


def build_variants(
    sp: Spec, methods: Sequence[str], sparsity: float, int8: bool, compact_repeats: int
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """({variant: model}, {variant: correctness row}), "dense" (the fastest dense path) first."""
    dense = sp.build()
    x = sp.example()
    variants = {"dense": fastest_dense(dense)}
    rows = {"dense": {"params_counted": count_params(dense), **compact_size_report(dense)}}
    rows["dense"]["params_stored"] = rows["dense"].pop("params")
    for method in methods:
        masked = pruned(sp, method, sparsity)
        for q in (False, True) if int8 else (False,):
            name = method + ("+int8" if q else "")
            small, manifest = compact(masked, int8=q, repeats=compact_repeats)
            variants[name] = small
            rows[name] = {"int8": q, **check_variant(sp, masked, small, manifest, x)}
    return variants, rows


def time_variants(
    sp: Spec,
    variants: dict[str, Any],
    *,
    threads: Sequence[int],
    repeats: int,
    warmup: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """{str(threads): {variant: {"median", "p10", "p90", "samples", "speedup"}}} in `sp.unit`.

    `variants` are runners (`sp.runner` of each model); "dense" is the reference.
    """
    names = list(variants)
    out: dict[str, dict[str, Any]] = {}
    for n in threads:
        samples: dict[str, list[float]] = {name: [] for name in names}
        with num_threads(n), torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    sp.timed(variants[name])
            for order in interleaved_orders(names, repeats, seed):
                for name in order:
                    samples[name].append(sp.timed(variants[name]))
        base = statistics.median(samples["dense"])
        out[str(n)] = {}
        for name, s in samples.items():
            p10, med, p90 = percentiles(s)
            out[str(n)][name] = {
                "median": med, "p10": p10, "p90": p90, "samples": s, "speedup": base / med
            }  # fmt: skip
    return out


def measure_model(
    name: str,
    *,
    methods: Sequence[str] = METHODS,
    sparsity: float = 0.75,
    int8: bool = True,
    timing: bool = True,
    threads: Sequence[int] = (1, 2),
    repeats: int = 20,
    warmup: int = 2,
    compact_repeats: int = 20,
    tiny: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Every column of the table for one model (see the module docstring)."""
    sp = spec(name, tiny=tiny)
    variants, rows = build_variants(sp, methods, sparsity, int8, compact_repeats)
    counted = sp.counted or sp.timed
    with torch.inference_mode():
        flops = {v: call_flops(m, lambda m=m: counted(m)) for v, m in variants.items()}
        runners = {v: sp.runner(m) for v, m in variants.items()}
    if sp.eager is not None:  # the model's own dense path, for reference, after "dense"
        runners["dense_eager"] = sp.eager(sp.build())
        flops["dense_eager"] = flops["dense"]
        rows = {"dense": rows["dense"], "dense_eager": dict(rows["dense"]), **rows}
    for v, row in rows.items():
        row["flops"] = flops[v]
        row["flop_ratio"] = flops["dense"] / flops[v] if flops[v] else None
    result = {"model": name, "unit": sp.unit, "rows": rows, "timing": None}
    if timing:
        result["timing"] = time_variants(
            sp, runners, threads=threads, repeats=repeats, warmup=warmup, seed=seed
        )
    return result


def measure(models: Sequence[str], **kw: Any) -> dict[str, Any]:
    """`measure_model` for each model, with the options used."""
    opts = {k: list(v) if isinstance(v, tuple | list) else v for k, v in kw.items()}
    return {"options": opts, "models": [measure_model(m, **copy.deepcopy(kw)) for m in models]}


def _diff(row: dict[str, Any]) -> str:
    if "max_diff" not in row:
        return "reference"
    d, scale = row["max_diff"], max(row["ref_scale"], 1e-12)
    if row.get("int8"):
        return f"int8: {d:.1e} ({d / scale:.1%} of max)"
    return f"{'yes' if d <= 1e-4 * (1 + scale) else 'NO'} ({d:.1e})"


def _trip(row: dict[str, Any]) -> str:
    if "round_trip_diff" not in row:
        return "-"
    d = row["round_trip_diff"]
    return "exact" if d == 0 else f"diff {d:.1e}"


def _speed_cells(result: dict[str, Any], name: str, row: dict[str, Any]) -> list[str]:
    timing = result["timing"]
    if timing is None:
        return ["not measured"] * 4
    threads = list(timing)
    t1 = timing[threads[0]][name]
    ratio = row["flop_ratio"]
    rest = [f"{timing[n][name]['speedup']:.2f}x" for n in threads[1:]]
    return [
        f"{t1['median']:.3f} ({t1['p10']:.3f}-{t1['p90']:.3f})",
        f"{t1['speedup']:.2f}x",
        f"{t1['speedup'] / ratio:.2f}" if ratio else "n/a",
        ", ".join(rest) or "-",
    ]


def model_table(result: dict[str, Any]) -> list[str]:
    """Markdown lines: one row per variant of one model."""
    rows = result["rows"]
    dense = rows["dense"]["params_counted"]
    header = [
        "variant", "params (count_params)", "% of dense", "params stored", "stored / counted",
        "bytes", "outputs match (max abs diff)", "save / load", "FLOP ratio",
        f"{result['unit']}, 1 thread (p10-p90)", "speed-up", "speed-up / FLOP ratio",
        "speed-up, more threads",
    ]  # fmt: skip
    lines = [
        f"## {result['model']}",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for name, row in rows.items():
        cells = [
            f"`{name}`", f"{row['params_counted']:,}", f"{row['params_counted'] / dense:.1%}",
            f"{row['params_stored']:,}", f"{row['params_stored'] / row['params_counted']:.3f}",
            f"{row['size_bytes']:,}", _diff(row), _trip(row), f"{row['flop_ratio']:.2f}x",
            *_speed_cells(result, name, row),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def gpt2_target(result: dict[str, Any]) -> list[str]:
    """Whether structured / factorized GPT-2 reach GPT2_TARGET x their FLOP ratio (1 thread)."""
    if result["model"] != "gpt2" or result["timing"] is None:
        return []
    first = next(iter(result["timing"].values()))
    lines = []
    for name in ("structured", "factorized"):
        if name in result["rows"]:
            ratio = result["rows"][name]["flop_ratio"]
            got = first[name]["speedup"] / ratio
            verdict = "met" if got >= GPT2_TARGET else "NOT met"
            lines.append(
                f"- GPT-2 {name}: speed-up / FLOP ratio = {got:.2f} (target >= {GPT2_TARGET}): "
                f"{verdict}"
            )
    return lines + ([""] if lines else [])


def to_markdown(result: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    """The Markdown report of `measure`."""
    from prunekit.bench.markdown import bench_header

    opts = result["options"]
    timed = "timed" if opts.get("timing", True) else "not timed (correctness columns only)"
    lines = bench_header(
        "Models prunekit did not build: pruned, compacted, saved, loaded, timed",
        command, machine,
        f"One-shot magnitude pruning to sparsity {opts.get('sparsity')} of each scope, then "
        f"`compact` (int8 rows: `compact(int8=True)`); speed {timed}: batch 1, interleaved "
        f"variants, {opts.get('repeats')} repetitions, medians, threads {opts.get('threads')}; "
        "baseline `dense` = `fastest_dense` of the same model.",
    )  # fmt: skip
    for r in result["models"]:
        lines += model_table(r) + gpt2_target(r)
    lines += [
        "params stored: what the compact model keeps (CSR values, int8 entries, a tied tensor "
        "once); count_params: the pruned model's effective count (biases of removed units "
        "included). save / load: `save_compact` then `load_compact(folder, model=<fresh dense "
        "model>)`, logits vs the compact model. FLOP ratio: FLOPs of the timed call, dense / "
        "variant (`prunekit.eval.flops_trace`; int8 keeps the count).",
        "",
    ]
    return "\n".join(lines)
