"""The report of `prunekit bench am-compress`, rebuilt from the finished cells' JSON files.

    paths = build_am_report(work, out, command=..., machine=...)
    # out/am_compress.md, out/results.json, out/pareto_cer.png, out/pareto_wer.png

Only finished cells are read, so a partial grid gives a partial report (missing rows say so in
the verdicts). Timings in the rows are whatever machine ran them: compare them only from one
idle-machine run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json, write_text
from prunekit.bench.am_cells import base_width, lowrank_points
from prunekit.bench.am_spec import AmCompressSpec
from prunekit.bench.am_verdicts import (
    LEARNED,
    front_verdict,
    larger_sparse_verdict,
    sparse_vs_dense_verdict,
    training_time_verdict,
    untrained,
)
from prunekit.lowrank.report import pareto_front, plot_pareto

Row = dict[str, Any]
LATENCY_FILE = "stream_ctc_trained.json"


def read_cells(work: Path) -> dict[str, dict[str, Any]]:
    """{cell id: cell JSON} of every finished cell under work/cells."""
    out = {}
    for path in sorted((work / "cells").glob("*.json")):
        out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return out


def is_short(spec: AmCompressSpec, row: Row) -> bool:
    """A stage-2 row of a short stage 1 (the paper's switch to low rank after a few epochs)."""
    return int(row["stage1_steps"]) < spec.am.train.steps


def split_rows(spec: AmCompressSpec, cells: Mapping[str, dict[str, Any]]) -> dict[str, list[Row]]:
    """Rows by role: dense, narang, cubic, structured, tracenorm, l2, short (short stage 1)."""
    out: dict[str, list[Row]] = {k: [] for k in
                                 ("dense", "narang", "cubic", "structured", "tracenorm", "l2",
                                  "short")}  # fmt: skip
    for cell in cells.values():
        for r in cell["rows"]:
            if r["kind"] != "lowrank":
                out[r["kind"]].append(r)
            elif is_short(spec, r):
                out["short"].append(r)
            else:
                out[r["regularizer"]].append(r)
    for rows in out.values():
        rows.sort(key=lambda r: (r["width"], r["params"]))
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def sweep_table(rows: Sequence[Row], split: str = "test") -> str:
    """Stage-2 rows by size; `front`: on the Pareto front of its own group (by `metric`)."""
    metric = f"{split}_cer"
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    on_front: set[int] = set()
    for g in groups.values():
        flags = pareto_front([(r["params"], r[metric]) for r in g])
        on_front |= {id(r) for r, f in zip(g, flags, strict=True) if f}
    lines = [
        "| group | lambda_rec | lambda_nonrec | threshold | params | of dense | stage 1 steps "
        f"| {split} WER % | {split} CER % | unseen CER % | front |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: r["params"]):
        lines.append(
            f"| {r['group']} | {r['lambda_rec']:g} | {r['lambda_nonrec']:g} | {r['threshold']:g} "
            f"| {r['params']:,} | {100 * r['params'] / r['dense_params']:.1f} % "
            f"| {r['stage1_steps']} | {_pct(r.get(f'{split}_wer'))} | {_pct(r.get(metric))} "
            f"| {_pct(r.get(f'{split}_unseen_cer'))} | {'yes' if id(r) in on_front else ''} |"
        )
    return "\n".join(lines) + "\n"


def nu_table(work: Path, spec: AmCompressSpec) -> str:
    """nu(W) and the 90 %-variance rank at the end of every stage 1, mean over recurrent and
    other matrices (from each point's stage1/nu.json)."""
    lines = ["| point | mean nu (recurrent) | mean nu (other) | sum r90 / sum d |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name in lowrank_points(spec):
        path = work / "runs" / f"lowrank-{name}" / name / "stage1" / "nu.json"
        res = path.parent / "result.json"
        if not (path.is_file() and res.is_file()):
            continue
        last = json.loads(path.read_text(encoding="utf-8"))["rows"][-1]
        mats = json.loads(res.read_text(encoding="utf-8"))["matrices"]
        rec = [last["nu"][m] for m, v in mats.items() if v["recurrent"]]
        other = [last["nu"][m] for m, v in mats.items() if not v["recurrent"]]
        dims = sum(min(v["shape"]) for v in mats.values())
        lines.append(
            f"| {name} | {sum(rec) / max(1, len(rec)):.3f} | {sum(other) / max(1, len(other)):.3f} "
            f"| {sum(last['r90'].values())} / {dims} |"
        )
    return "\n".join(lines) + "\n"


def narang_table(rows: Mapping[str, list[Row]], split: str = "test") -> str:
    """Dense widths, Narang's runs, the cubic comparisons and the structured run."""
    metric = f"{split}_cer"
    dense = {r["width"]: r for r in rows["dense"]}
    lines = [f"| model | width | sparsity | non-zero params | {split} WER % | {split} CER % "
             "| unseen CER % | CER vs dense same width |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for kind in ("dense", "narang", "cubic", "structured"):
        for r in rows[kind]:
            d = dense.get(r["width"])
            rel = "-" if d is None or kind == "dense" else f"{r[metric] / d[metric] - 1:+.1%}"
            lines.append(
                f"| {r['variant']} | {r['width']} | {r.get('sparsity', 0.0):.1%} "
                f"| {r['params']:,} | {_pct(r.get(f'{split}_wer'))} | {_pct(r.get(metric))} "
                f"| {_pct(r.get(f'{split}_unseen_cer'))} | {rel} |"
            )
    return "\n".join(lines) + "\n"


def verdicts(spec: AmCompressSpec, rows: Mapping[str, list[Row]]) -> list[dict[str, Any]]:
    """Seed 000's and seed 001's claims against the rows (CER first, then WER for the front)."""
    split = spec.bench.eval_splits[0]
    cer, wer = f"{split}_cer", f"{split}_wer"
    out = [front_verdict(rows["tracenorm"], rows["l2"], m) for m in (cer, wer)]
    full_by_point = {}
    for r in rows["tracenorm"]:
        full_by_point.setdefault((r["lambda_rec"], r["lambda_nonrec"]), []).append(r)
    short_groups: dict[tuple, list[Row]] = {}
    for r in rows["short"]:
        short_groups.setdefault((r["lambda_rec"], r["lambda_nonrec"]), []).append(r)
    for key, short in short_groups.items():
        out.append(training_time_verdict(short, full_by_point.get(key, []), cer))
    if not short_groups:
        out.append(training_time_verdict([], [], cer))
    cw = spec.bench.compare_width
    dense = {r["width"]: r for r in rows["dense"]}
    narang = {r["width"]: r for r in rows["narang"]}
    out.append(sparse_vs_dense_verdict(narang.get(cw), dense.get(cw), cer))
    out.append(larger_sparse_verdict(rows["narang"], rows["dense"], cer))
    base = dense.get(base_width(spec))
    return out if base is None else untrained(out, base[cer], LEARNED)


def _grouped(spec: AmCompressSpec, rows: Mapping[str, list[Row]]) -> list[Row]:
    sweep = []
    for group in ("tracenorm", "l2", "short"):
        label = "tracenorm (short stage 1)" if group == "short" else group
        sweep += [{**r, "group": label, "regularizer": label} for r in rows[group]]
    return sweep


def schedule_lines(spec: AmCompressSpec) -> list[str]:
    """How long each lowrank section trains: warm start, regularized stage 1, stage 2."""
    steps = spec.am.train.steps
    out = []
    for s in spec.lowrank:
        total = s.stage1_steps or steps
        warm = (f"{s.warm_steps} plain warm-start steps, then {total - s.warm_steps} factored"
                if s.warm_steps else f"{total} factored")  # fmt: skip
        if s.regularizer == "l2":
            warm = warm.replace("factored", "plain")
        out.append(
            f"- {s.name}: stage 1 = {warm} steps with the {s.regularizer} regularizer; stage 2 = "
            f"{s.stage2_steps} steps at lr {s.stage2_lr:g} per threshold (the dense models: "
            f"{steps} steps)."
        )
    return out


def run_by(cells: Mapping[str, dict[str, Any]]) -> str:
    """Which commands at which commits trained the finished cells (from their invocations)."""
    runs: dict[tuple[str, str], int] = {}
    for cell in cells.values():
        inv = cell.get("invocation") or {}
        key = (str(inv.get("command", "?")), str(inv.get("git_commit", "?")))
        runs[key] = runs.get(key, 0) + 1
    parts = [f"`{cmd}` at {commit} ({n} cells)" for (cmd, commit), n in sorted(runs.items())]
    return "Cells trained by: " + "; ".join(parts) + "." if parts else "No cell finished."


def _latency_section(out: Path) -> list[str]:
    path = out / LATENCY_FILE
    if not path.is_file():
        return ["Not measured yet: see the command above (an idle machine, 1 thread)."]
    lat = json.loads(path.read_text(encoding="utf-8"))
    lines = [f"From `{LATENCY_FILE}` (`{lat.get('command', '')}`):", "",
             "| target | measured | met |", "|---|---:|---|"]  # fmt: skip
    for t in lat["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']:.2f} | {met} |")
    return lines


def build_am_report(
    work: str | Path, out: str | Path, spec: AmCompressSpec, *, command: str = "",
    machine: Mapping[str, Any] | None = None,
) -> dict[str, Path]:  # fmt: skip
    """Write the Markdown report, results.json and the Pareto plots into `out`."""
    work, out = Path(work), Path(out)
    cells = read_cells(work)
    rows = split_rows(spec, cells)
    sweep = _grouped(spec, rows)
    base = base_width(spec)
    dense = next((r for r in rows["dense"] if r["width"] == base), None)
    split = spec.bench.eval_splits[0]
    for metric, name in ((f"{split}_cer", "pareto_cer.png"), (f"{split}_wer", "pareto_wer.png")):
        if sweep:
            point = None if dense is None else (dense["params"], dense[metric])
            plot_pareto(sweep, out / name, metric=metric, dense=point)
    found = verdicts(spec, rows)
    m = dict(machine or {})
    lines = [
        "# Seeds 000 and 001 on the CTC acoustic model", "",
        f"Command: `{command}`  ",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}, "
        f"commit {m.get('git_commit', '?')}. Cells finished: {len(cells)}.  ",
        f"{run_by(cells)}  ",
        f"Model: `{spec.am.model}`, {spec.am.train.steps} steps of <= {spec.am.max_frames} frames "
        f"(widths: d_hidden = d_input). Error rates: greedy (no LM) on "
        f"{', '.join(spec.bench.eval_splits)}.", "",
        "## Verdicts", "", "| claim | verdict | evidence |", "|---|---|---|",
        *[f"| {v['claim']} | **{v['verdict']}** | {v['evidence']} |" for v in found], "",
        "## Trace norm vs l2 (seed 000): stage-2 models", "",
        *schedule_lines(spec), "",
        "![CER](pareto_cer.png) ![WER](pareto_wer.png)", "",
        sweep_table(sweep, split) if sweep else "No low-rank cell finished.\n",
        "nu(W) at the end of stage 1 (1: all singular values equal; 0: rank 1):", "",
        nu_table(work, spec), "",
        "## Narang's table at our scale (seed 001)", "",
        narang_table(rows, split) if any(rows[k] for k in ("dense", "narang")) else "Not run.\n",
        "## Streaming latency of the trained variants", "",
        "`prunekit bench stream --model ctc --trained WORK --out OUT` (idle machine).", "",
        *_latency_section(out), "",
    ]  # fmt: skip
    write_text(out / "am_compress.md", "\n".join(lines))
    write_json(out / "results.json", {"command": command, "machine": m, "verdicts": found,
                                      "rows": rows, "cells": sorted(cells)})  # fmt: skip
    return {"markdown": out / "am_compress.md", "results": out / "results.json"}
