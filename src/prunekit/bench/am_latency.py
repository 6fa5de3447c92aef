"""Streaming latency of the acoustic models `prunekit bench am-compress` trained (its work folder).

    prunekit bench stream --model ctc --trained runs/am-compress --out benchmarks/results/am_compress

Variants, each loaded from its checkpoint and made compact at batch 1 (`compact`: thin matmuls for
factored gate stacks, CSR where measured faster, physically smaller layers after structured
pruning), then each also `+int8` (`quantize_compact`):

- `dense-h<w>` (the fastest dense fp32 path, `fastest_dense`) for every dense width, and for the
  swept width also `dense-eager`, `int8`, `torch-int8` and `floor` (every matrix at rank 1: what
  a step costs besides its weights) as in `prunekit bench stream`;
- `lowrank:<point>@<t>`: the stage-2 models on the Pareto front (test CER) of each regularizer,
  and the one nearest `LOWRANK_TARGET` of the dense parameters;
- `narang-h<w>`, `cubic-<criterion>-h<w>` (sparse) and `structured-h<w>`.

Targets, computed from the first thread count: low-rank and structured speed-up over the dense
model of their width >= 0.8 x their FLOP ratio; the low-rank + int8 model nearest 10 % of the
parameters >= 10x the fastest dense path (the fastest of dense, dense-eager, int8, torch-int8);
every sparse model at least as fast as the dense model of its width.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.bench.stream_latency import compare_streaming
from prunekit.errors import PrunekitError
from prunekit.export.compact import compact
from prunekit.export.fast_dense import fastest_dense
from prunekit.export.int8_choice import quantize_compact
from prunekit.export.quantize import torch_dynamic_int8
from prunekit.lowrank.factor import factorize, select_matrices
from prunekit.lowrank.report import pareto_front

Progress = Callable[[str], None]
LOWRANK_TARGET = 0.10
DENSE_PATHS = ("dense-eager", "dense", "int8", "torch-int8")
METRIC = "test_cer"


def _load(path: Path) -> nn.Module:
    from prunekit.cli.export import load_pruned  # masks / factors re-attached from the run state

    if not path.exists():
        raise PrunekitError(f"checkpoint {path} is gone: rerun its cell (delete its cells/ JSON)")
    model, _ = load_pruned(path)
    return model.eval()


def _cells(work: Path) -> list[dict[str, Any]]:
    cells = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(work.glob("cells/*.json"))]
    if not cells:
        raise PrunekitError(
            f"{work} has no finished cell: run `prunekit bench am-compress --work {work}` first"
        )
    return cells


def base_width(work: Path) -> int:
    """The swept width: settings.json's am.model.d_hidden."""
    settings = json.loads((work / "settings.json").read_text(encoding="utf-8"))
    return int(settings["am"]["model"].get("d_hidden", 256))


def lowrank_choice(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage-2 rows on each regularizer's (params, test CER) front, and the row nearest
    LOWRANK_TARGET of the dense parameters."""
    chosen: dict[str, dict[str, Any]] = {}
    for reg in sorted({r["regularizer"] for r in rows}):
        group = [r for r in rows if r["regularizer"] == reg and r.get(METRIC) is not None]
        flags = pareto_front([(r["params"], r[METRIC]) for r in group])
        chosen.update({r["variant"]: r for r, f in zip(group, flags, strict=True) if f})
    if rows:
        near = min(rows, key=lambda r: abs(r["params"] / r["dense_params"] - LOWRANK_TARGET))
        chosen[near["variant"]] = near
    return list(chosen.values())


def checkpoints(work: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """{variant name: (checkpoint, row)} of every trained model to time."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    lowrank = []
    for cell in _cells(work):
        c = cell["cell"]
        for row in cell["rows"]:
            kind = row["kind"]
            if kind == "dense":
                out[c["id"]] = (work / "runs" / c["id"] / "checkpoints" / "best", row)
            elif kind == "narang":
                out[c["id"]] = (work / "runs" / c["id"] / "narang" / "checkpoints" / "last", row)
            elif kind == "cubic":
                run = work / "runs" / f"narang-h{c['width']}" / "cubic" / c["point"]
                out[c["id"]] = (run / "checkpoints" / "last", row)
            elif kind == "structured":
                out[c["id"]] = (work / "runs" / c["id"] / "checkpoints" / "last", row)
            else:
                lowrank.append({**row, "point": c["point"], "cell": c["id"]})
    for r in lowrank_choice(lowrank):
        run = work / "runs" / r["cell"] / r["point"] / f"stage2-{r['threshold']:g}"
        out[f"lowrank:{r['variant']}"] = (run / "checkpoints" / "best", r)
    return out


def _floor(model: nn.Module, **opts: Any) -> nn.Module:
    names = [m.name for m in select_matrices(model)]
    floor, _ = compact(factorize(copy.deepcopy(model), dict.fromkeys(names, 1)), **opts)
    return floor


def build_trained_variants(
    work: str | Path, *, threads: int = 1, repeats: int = 10, int8_policy: str = "all",
    progress: Progress | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], int]:  # fmt: skip
    """(variants, info, base width): every trained model of `work`, compact, fp32 and int8."""
    work = Path(work)
    say = progress or (lambda _m: None)
    base = base_width(work)
    opts = {"batch_size": 1, "threads": threads, "repeats": repeats}
    variants: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, (path, row) in checkpoints(work).items():
        say(f"{name}: compact")
        model = _load(path)
        keep = {k: row.get(k) for k in ("kind", "width", "params", "dense_params", METRIC,
                                        "sparsity", "threshold")}  # fmt: skip
        if row["kind"] == "dense":
            variants[name] = fastest_dense(model, **opts)
            info[name] = {**keep, "method": "fastest_dense"}
            if row["width"] == base:
                variants["dense-eager"], info["dense-eager"] = model, {**keep, "method": "eager"}
                variants["int8"], _ = quantize_compact(variants[name], policy="all", **opts)
                variants["torch-int8"] = torch_dynamic_int8(model)
                variants["floor"] = _floor(model, **opts)
                for extra in ("int8", "torch-int8", "floor"):  # not evaluated: no CER
                    info[extra] = {**keep, METRIC: None, "method": extra}
                info["floor"]["params"] = None
            continue
        fp32, manifest = compact(model, **opts)
        variants[name] = fp32
        info[name] = {**keep, "choices": manifest["choices"], "lowrank": manifest["lowrank"]}
        variants[f"{name}+int8"], choices = quantize_compact(fp32, policy=int8_policy, **opts)
        info[f"{name}+int8"] = {**keep, METRIC: None, "int8_choices": choices}
    if f"dense-h{base}" not in variants:
        raise PrunekitError(f"dense-h{base} has not finished: run its cell first (the baseline)")
    return variants, info, base


def trained_targets(
    timed: Mapping[str, Any], info: Mapping[str, Mapping[str, Any]], base: int
) -> list[dict[str, Any]]:
    """The issue's targets against the first thread count (see the module docstring)."""
    first = timed["by_threads"][str(timed["threads"][0])]
    flops = {n: v["flops_per_output_frame"] for n, v in timed["variants"].items()}

    def ms(name: str) -> float:
        return first[name]["median_ms"]

    rows: list[dict[str, Any]] = []
    for name, meta in info.items():
        dense = f"dense-h{meta.get('width')}"
        if name.endswith("+int8") or meta.get("kind") in (None, "dense") or dense not in first:
            continue
        up, ratio = ms(dense) / ms(name), flops[dense] / flops[name]
        if meta["kind"] in ("lowrank", "structured"):
            rows.append({"target": f"{name}: speed-up >= 0.8 x FLOP ratio ({ratio:.2f})",
                         "measured": up / ratio, "met": up / ratio >= 0.8})  # fmt: skip
        else:
            rows.append({"target": f"{name} (sparse) never slower than {dense}",
                         "measured": up, "met": up >= 1.0})  # fmt: skip
    fastest = min(ms(n) for n in DENSE_PATHS if n in first)
    lowrank = [n for n, m in info.items() if m.get("kind") == "lowrank" and n.endswith("+int8")]
    if lowrank:
        near = min(lowrank, key=lambda n: abs(info[n]["params"] / info[n]["dense_params"] - 0.1))
        frac = info[near]["params"] / info[near]["dense_params"]
        up = fastest / ms(near)
        rows.append({"target": f"{near} ({frac:.0%} of the parameters) >= 10x the fastest dense "
                     "path", "measured": up, "met": up >= 10.0})  # fmt: skip
    if "floor" in first:
        rows.append({"target": f"bound: dense-h{base} / floor (no compression of the matrices "
                     "beats it)", "measured": ms(f"dense-h{base}") / ms("floor"), "met": None})  # fmt: skip
    return rows


def run_trained_stream(
    work: str | Path, *, threads: tuple[int, ...] = (1,), frames: int = 200, repeats: int = 20,
    int8_policy: str = "all", progress: Progress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build and time every trained variant of `work`; a JSON-able result with its targets."""
    variants, info, base = build_trained_variants(
        work, threads=threads[0], repeats=repeats, int8_policy=int8_policy, progress=progress
    )
    n_mels = int(variants[f"dense-h{base}"].feat_mean.numel())
    if progress:
        progress(f"timing {len(variants)} variants at threads {list(threads)}")
    timed = compare_streaming(
        variants, baseline=f"dense-h{base}", n_mels=n_mels, threads=threads, frames=frames,
        repeats=repeats,
    )  # fmt: skip
    return {"work": str(work), "base_width": base, "int8_policy": int8_policy,
            "variants_info": info, "stream": timed,
            "targets": trained_targets(timed, info, base)}  # fmt: skip


def trained_markdown(result: Mapping[str, Any], machine: Mapping[str, Any], command: str) -> str:
    """One row per trained variant (ms per 10 ms frame, speed-up and FLOP ratio over the dense
    model of its width, parameters, test CER), then the targets."""
    timed, info = result["stream"], result["variants_info"]
    first = str(timed["threads"][0])
    by = timed["by_threads"][first]
    lines = [
        "# Streaming latency of the trained acoustic models (bench am-compress)", "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, torch "
        f"{machine.get('torch', '?')}, commit {machine.get('git_commit', '?')}  ",
        f"Work folder: `{result['work']}`. Batch 1, one 10 ms frame per step() call, "
        f"{timed['frames']} frames per repetition, {timed['repeats']} repetitions, interleaved, "
        f"{first} thread(s).", "",
        "| variant | params | test CER % (fp32 model) | ms / 10 ms frame | speed-up vs dense same width "
        "| FLOP ratio | speed-up / FLOP ratio |", "|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, row in by.items():
        meta = info.get(name, {})
        dense = f"dense-h{meta.get('width')}"
        ref = dense if dense in by else timed["baseline"]
        up = by[ref]["median_ms"] / row["median_ms"]
        ratio = (timed["variants"][ref]["flops_per_output_frame"]
                 / timed["variants"][name]["flops_per_output_frame"])  # fmt: skip
        cer, params = meta.get(METRIC), meta.get("params")
        lines.append(
            f"| `{name}` | {'-' if params is None else f'{params:,}'} "
            f"| {'-' if cer is None else f'{100 * cer:.2f}'} "
            f"| {row['median_ms']:.3f} | {up:.2f}x | {ratio:.2f}x | {up / ratio:.2f} |"
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']:.2f} | {met} |")
    lines += ["", "Timings are wall-clock medians; compare variants only within one run, on an "
              "idle machine.", ""]  # fmt: skip
    return "\n".join(lines)
