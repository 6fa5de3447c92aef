"""`prunekit report DIR`: seed 004's tables and figures from a paper grid's cell JSONs alone.

Reads `DIR/cells/*.json` (and `DIR/grid.json` for the grid's settings and invocations, when
present); writes `tables.md` (Tables 1-3 in the paper's layout with Δ% columns, Fig. 2 and Fig. 3
as tables), `results.json` (every cell, the aggregates, provenance) and the PNG plots. No model is
loaded. Cells repeated with several seeds are shown as mean ± sample standard deviation (n - 1);
Δ% values are computed from the means.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prunekit.atomic import write_json, write_text, write_with  # noqa: E402
from prunekit.errors import PrunekitError  # noqa: E402

DASH = "—"
Key = tuple[str, str | None, str | None, str | None, float | None]  # kind, sched, crit, meth, size


@dataclass
class Agg:
    """A cell's result over its seeds: the metric's mean, std and n, and the cost means."""

    mean: float
    std: float
    n: int
    seeds: list[int]
    params: float
    flops: float | None
    flop_speedup: float | None
    measured_speedup: float | None
    ms_per_token: float | None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0.0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def delta_pct(value: float, reference: float) -> float:
    """Relative change of `value` against `reference`, in percent."""
    return 100.0 * (value / reference - 1.0)


def load_cells(folder: Path) -> list[dict[str, Any]]:
    """Every cell JSON under folder/cells.

    Raises:
        PrunekitError: no cells, or no finished baseline cell.
    """
    files = sorted((folder / "cells").glob("*.json"))
    if not files:
        raise PrunekitError(
            f"{folder} has no cells/*.json: pass the --out folder of `prunekit bench paper`"
        )
    cells = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    if not any(c.get("kind") == "baseline" for c in cells):
        raise PrunekitError(f"{folder}/cells has no baseline.json: run the baseline cell first")
    return cells


def _key(cell: dict[str, Any]) -> Key:
    size = cell.get("size")
    return (
        cell["kind"],
        cell.get("schedule"),
        cell.get("criterion"),
        cell.get("method"),
        None if size is None else round(float(size), 6),
    )


def _mean_or_none(cells: list[dict[str, Any]], key: str) -> float | None:
    """Mean over the cells that have `key` (e.g. only some seeds were timed), else None."""
    values = [c[key] for c in cells if c.get(key) is not None]
    return statistics.fmean(values) if values else None


def is_table_cell(cell: dict[str, Any]) -> bool:
    """A pruned or from-scratch cell of Tables 1-3 (not a budget-axis run of other length)."""
    return cell["kind"] in ("prune", "scratch") and "budget_steps" not in cell


def aggregate(
    cells: list[dict[str, Any]],
    metric: str,
    key: Callable[[dict[str, Any]], Any] = _key,
    keep: Callable[[dict[str, Any]], bool] = is_table_cell,
) -> dict[Any, Agg]:
    """Group the cells `keep` accepts by `key` (what they computed: all but the seed), average."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for c in cells:
        if keep(c):
            groups.setdefault(key(c), []).append(c)
    out = {}
    for key, members in groups.items():
        mean, std = mean_std([float(c[metric]) for c in members])
        out[key] = Agg(
            mean=mean,
            std=std,
            n=len(members),
            seeds=sorted(int(c.get("seed", 0)) for c in members),
            params=statistics.fmean(c["effective_params"] for c in members),
            flops=_mean_or_none(members, "sparse_flops_per_token"),
            flop_speedup=_mean_or_none(members, "flop_speedup"),
            measured_speedup=_mean_or_none(members, "speedup_vs_dense"),
            ms_per_token=_mean_or_none(members, "decode_ms_per_token"),
        )
    return out


# ------------------------------------------------------------------ formatting


def _num(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.0f}k" if x >= 1e3 else f"{x:.0f}"


def fmt_ppl(a: Agg | None) -> str:
    """'16.21' or '16.21 ± 0.12 (n=3)'."""
    if a is None:
        return DASH
    return f"{a.mean:.2f}" if a.n == 1 else f"{a.mean:.2f} ± {a.std:.2f} (n={a.n})"


def fmt_cost(a: Agg | None) -> str:
    """FLOPs per token with the FLOP speed-up, then the measured batch-1 speed-up."""
    if a is None or a.flops is None:
        return DASH
    flop = f"{_num(a.flops)} ({a.flop_speedup:.2f}×)" if a.flop_speedup else _num(a.flops)
    meas = f"{a.measured_speedup:.2f}×" if a.measured_speedup else DASH
    return f"{flop} / {meas}"


def _fmt_delta(new: Agg | None, ref: Agg | None) -> str:
    return DASH if new is None or ref is None else f"{delta_pct(new.mean, ref.mean):+.1f}"


def _size_label(size: float, base_params: int) -> str:
    return f"{_num(size * base_params)} ({100 * size:g} %)"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ tables


@dataclass
class Layout:
    """What the grid compared: read from grid.json's `paper` section, else inferred."""

    sizes: list[float]
    t1_criterion: str
    criteria: list[str]  # the first is Table 2's reference
    t3_criterion: str
    methods: list[str]
    prune_steps: int | None = None  # steps of the Tables 1-3 incremental runs


def _prune_steps(cells: list[dict[str, Any]]) -> int | None:
    """Steps of the Tables 1-3 incremental runs, as their records say."""
    steps = [
        c.get("step") for c in cells if is_table_cell(c) and c.get("schedule") == "incremental"
    ]
    steps = [int(n) for n in steps if n]
    return max(set(steps), key=steps.count) if steps else None


def infer_layout(cells: list[dict[str, Any]], paper: dict[str, Any] | None) -> Layout:
    """The compared sizes, criteria and methods (grid settings win over what the cells show)."""
    sized = [c for c in cells if c.get("size") is not None and "budget_steps" not in c]
    sizes = sorted({round(c["size"], 6) for c in sized}, reverse=True)
    if paper:
        crit = [*paper.get("criteria", []), *paper.get("extra_criteria", [])]
        steps = (paper.get("prune") or {}).get("steps") or _prune_steps(cells)
        return Layout(
            sizes, paper["t1_criterion"], crit, paper["t3_criterion"], list(paper["methods"]), steps
        )

    def seen(table: str, field: str) -> list[str]:
        vals = {c.get(field) for c in cells if table in c.get("tables", []) and c.get(field)}
        return sorted(vals, key=lambda v: ({"magnitude": 0, "taylor": 1}.get(v, 2), v))

    t1 = seen("table1", "criterion") or ["magnitude"]
    t3 = seen("table3", "criterion") or ["taylor"]
    order = {"unstructured": 0, "structured": 1, "factorized": 2}
    methods = sorted(seen("table3", "method"), key=lambda m: (order.get(m, 3), m))
    return Layout(sizes, t1[0], seen("table2", "criterion"), t3[0], methods, _prune_steps(cells))


def table1(
    aggs: dict[Key, Agg], lay: Layout, base: int, tuned: dict[float, Agg] | None = None
) -> str:
    """Schedulers: one-shot vs incremental at every size, Δ% of incremental vs one-shot; with
    `tuned` (size -> one-shot followed by the incremental run's steps) also against that."""
    c, tuned = lay.t1_criterion, tuned or {}
    rows = []
    for s in lay.sizes:
        one = aggs.get(("prune", "one-shot", c, "unstructured", s))
        inc = aggs.get(("prune", "incremental", c, "unstructured", s))
        if one or inc:
            row = [_size_label(s, base), fmt_ppl(one), fmt_cost(one)]
            row += [fmt_ppl(tuned.get(s))] if tuned else []
            row += [fmt_ppl(inc), fmt_cost(inc), _fmt_delta(inc, one)]
            rows.append(row + ([_fmt_delta(inc, tuned.get(s))] if tuned else []))
    head = ["Model size", "One-shot", "FLOPs / meas."]
    head += [f"One-shot + {lay.prune_steps} steps"] if tuned else []
    head += ["Incremental", "FLOPs / meas.", "Δ%"]
    return _table(head + (["Δ% vs one-shot + steps"] if tuned else []), rows)


def table2(aggs: dict[Key, Agg], lay: Layout, base: int) -> str:
    """Criteria (incremental, unstructured): each criterion, Δ% against the first one."""
    crits = lay.criteria
    head = ["Model size", crits[0], "FLOPs / meas."] if crits else ["Model size"]
    for c in crits[1:]:
        head += [c, "Δ%", "FLOPs / meas."]
    rows = []
    for s in lay.sizes:
        got = [aggs.get(("prune", "incremental", c, "unstructured", s)) for c in crits]
        if not any(got):
            continue
        row = [_size_label(s, base), fmt_ppl(got[0]), fmt_cost(got[0])]
        for a in got[1:]:
            row += [fmt_ppl(a), _fmt_delta(a, got[0]), fmt_cost(a)]
        rows.append(row)
    return _table(head, rows)


def table3(aggs: dict[Key, Agg], lay: Layout, base: int) -> str:
    """Methods (rows) by size (columns), Δ% against from-scratch models of the same size."""
    sizes = lay.sizes
    head = ["NNLM", *(_size_label(s, base) for s in sizes)]
    scratch = [aggs.get(("scratch", None, None, None, s)) for s in sizes]
    rows = []
    if any(scratch):
        rows += [["from scratch", *map(fmt_ppl, scratch)]]
        rows += [["↳ FLOPs / meas.", *map(fmt_cost, scratch)]]
    for m in lay.methods:
        got = [aggs.get(("prune", "incremental", lay.t3_criterion, m, s)) for s in sizes]
        if not any(got):
            continue
        rows.append([m, *map(fmt_ppl, got)])
        if any(scratch):
            rows.append(
                ["↳ Δ% vs scratch", *(_fmt_delta(a, r) for a, r in zip(got, scratch, strict=True))]
            )
        rows.append(["↳ FLOPs / meas.", *map(fmt_cost, got)])
    return _table(head, rows)


# ------------------------------------------------------------------ plots


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_sizes(aggs: dict[Key, Agg], base: dict[str, Any], metric: str, path: Path) -> None:
    """PPL (log) vs effective parameters, one line per (schedule, criterion, method) and from
    scratch; seeded points carry their std as error bars."""
    series: dict[str, list[Agg]] = {}
    for (kind, sched, crit, meth, _), a in aggs.items():
        label = "from scratch" if kind == "scratch" else f"{sched} {crit} {meth}"
        series.setdefault(label, []).append(a)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for label, points in sorted(series.items()):
        pts = sorted(points, key=lambda a: a.params)
        ax.errorbar(
            [a.params for a in pts], [a.mean for a in pts], yerr=[a.std for a in pts],
            fmt="o-", ms=4, capsize=3, label=label,
        )  # fmt: skip
    ax.plot([base["params"]], [base[metric]], "k*", markersize=12, label="dense baseline")
    ax.set(xlabel="effective parameters", ylabel=metric, xscale="log", yscale="log")
    ax.set_title(f"{metric} vs model size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)


# ------------------------------------------------------------------ the report


def _provenance(cells: list[dict[str, Any]], grid: dict[str, Any] | None) -> list[str]:
    """One line per invocation that produced cells: command, commit, machine."""
    runs = (grid or {}).get("invocations") or []
    if not runs:
        seen: dict[tuple, dict] = {}
        for c in cells:
            if c.get("command"):
                seen.setdefault((c["command"], c.get("git_commit")), c)
        runs = list(seen.values())
    lines = []
    for r in runs:
        m = r.get("machine") or {}
        lines.append(
            f"- `{r.get('command') or '?'}` at commit `{r.get('git_commit') or '?'}` "
            f"({r.get('started_at', '?')}); {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"torch {m.get('torch', '?')}"
        )
    return lines


def render(
    cells: list[dict[str, Any]],
    grid: dict[str, Any] | None,
    metric: str,
    command: str,
    machine: dict[str, Any],
    flat: tuple[float, float] = (3.0, 1.0),
) -> tuple[str, dict[str, Any]]:
    """(tables.md text, the aggregates as JSON-able data) for `cells`; `flat` is Fig. 2's
    (window in epochs, tolerance in points) of 'the gap stopped moving'."""
    from prunekit.report import paper_budget as pb
    from prunekit.report.paper_fig2 import fig2_section, fig2_series, flat_summary
    from prunekit.report.paper_fig3 import fig3_table
    from prunekit.report.published import compare
    from prunekit.report.seeds import TUNED, seed_checks, seed_section

    base = next(c for c in cells if c["kind"] == "baseline")
    if metric not in base:
        raise PrunekitError(f"--metric {metric} is not in the cells: use valid_ppl or test_ppl")
    aggs = aggregate(cells, metric)
    lay = infer_layout(cells, (grid or {}).get("paper"))
    bp = int(base["params"])
    series = fig2_series(cells)
    tuned = pb.tuned_oneshot(pb.budget_aggs(cells, metric), lay)
    budget = pb.budget_axis(cells, metric, (grid or {}).get("paper"))
    flats = flat_summary(series, *flat)
    parts = [
        *_header(cells, grid, metric, command, machine, aggs),
        f"## Table 1: pruning schedulers ({lay.t1_criterion}, unstructured)\n",
        table1(aggs, lay, bp, tuned),
        f"## Table 2: pruning criteria (incremental, unstructured; Δ% vs {lay.criteria[0] if lay.criteria else '?'})\n",
        table2(aggs, lay, bp),
        f"## Table 3: pruning methods ({lay.t3_criterion}, incremental; Δ% vs from scratch)\n",
        table3(aggs, lay, bp),
        "![PPL vs size](ppl_vs_size.png)\n",
        *([pb.budget_section(budget, bp)] if budget else []),
        fig2_section(cells, series, bp, *flat),
        "## Fig. 3: one layer group pruned at a time (valid PPL)\n",
        fig3_table(cells, base["valid_ppl"], bp),
        "![Fig. 3](fig3_layers.png)\n",
    ]
    tuned_keys = {
        ("prune", TUNED, lay.t1_criterion, "unstructured", s): a for s, a in tuned.items()
    }
    checks = seed_checks({**aggs, **tuned_keys}, lay)
    parts.append(seed_section(checks, bp))
    notes = pb.finding_notes(aggs, lay, tuned, budget, flats)
    side_by_side, findings = compare(aggs, lay, bp, cells, notes)
    parts.append(side_by_side)
    data = {
        "metric": metric,
        "layout": asdict(lay),
        "aggregates": [
            {"kind": k[0], "schedule": k[1], "criterion": k[2], "method": k[3], "size": k[4]}
            | asdict(a)
            for k, a in aggs.items()
        ],
        "table1_oneshot_tuned": {str(s): asdict(a) for s, a in tuned.items()},
        "budget": asdict(budget) if budget else None,
        "fig2": {str(s): pts for s, pts in series.items()},
        "fig2_flat": {str(s): asdict(f) if f else None for s, f in flats.items()},
        "findings": findings,
        "seed_checks": checks,
    }
    return "\n".join(parts), data


def _header(
    cells: list[dict[str, Any]],
    grid: dict[str, Any] | None,
    metric: str,
    command: str,
    machine: dict[str, Any],
    aggs: dict[Key, Agg],
) -> list[str]:
    """Title, provenance and how to read the tables."""
    base = next(c for c in cells if c["kind"] == "baseline")
    bp = int(base["params"])
    base_cost = f"{_num(base['flops_per_token'])} FLOPs/token"
    if base.get("decode_ms_per_token"):
        base_cost += f", {base['decode_ms_per_token']:.3f} ms/token batch-1"
    backends = sorted({c["latency"].get("backend", "?") for c in cells if c.get("latency")})
    timed = f" Measured with backend {', '.join(backends)}." if backends else ""
    seeded = ", ".join(str(n) for n in sorted({a.n for a in aggs.values() if a.n > 1}))
    return [
        "# Neural LM pruning for ASR (seed 004) at prunekit scale\n",
        f"Built by `{command}` with commit `{machine.get('git_commit', '?')}` on "
        f"{machine.get('cpu', '?')} from {len(cells)} cell(s). Cells were produced by:\n",
        *_provenance(cells, grid),
        "",
        f"Baseline: {_num(bp)} parameters, {metric} **{base[metric]:.2f}**, {base_cost}. "
        f"Metric: `{metric}` (per token). Δ% is the relative change in PPL. "
        "'FLOPs / meas.' is FLOPs per token with zeros skipped (FLOP speed-up vs the "
        "baseline), then the measured batch-1 decoding speed-up (— until `--latency` runs)."
        + timed
        + " "
        + (
            f"Cells with several seeds show mean ± sample std (n={seeded}); Δ% uses the means."
            if seeded
            else ""
        ),
        "",
    ]


def load_grid(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(the cells, grid.json or None) of a grid folder (see `load_cells`)."""
    cells = load_cells(folder)
    grid_file = folder / "grid.json"
    grid = json.loads(grid_file.read_text(encoding="utf-8")) if grid_file.is_file() else None
    return cells, grid


def build_report(
    folder: str | Path,
    *,
    metric: str = "valid_ppl",
    command: str = "",
    machine: dict | None = None,
    flat: tuple[float, float] = (3.0, 1.0),
) -> dict[str, Path]:
    """Write tables.md, results.json and the PNGs of a paper grid folder; return their paths.

    `flat`: Fig. 2's (window in epochs, tolerance in points), see `paper_fig2`.

    Raises:
        PrunekitError: no cells or no baseline in `folder`, or an unknown metric.
    """
    from prunekit.report.paper_budget import budget_axis, plot_budget
    from prunekit.report.paper_fig2 import fig2_series, plot_fig2
    from prunekit.report.paper_fig3 import plot_fig3

    folder = Path(folder)
    cells, grid = load_grid(folder)
    machine = machine or {}
    text, data = render(cells, grid, metric, command, machine, flat)
    base = next(c for c in cells if c["kind"] == "baseline")
    paths = {
        "tables": folder / "tables.md",
        "results": folder / "results.json",
        "sizes": folder / "ppl_vs_size.png",
        "fig2": folder / "fig2_finetune.png",
        "fig3": folder / "fig3_layers.png",
    }
    write_text(paths["tables"], text)
    plot_sizes(aggregate(cells, metric), base, metric, paths["sizes"])
    plot_fig2(fig2_series(cells), int(base["params"]), paths["fig2"])
    plot_fig3(cells, base["valid_ppl"], paths["fig3"])
    budget = budget_axis(cells, metric, (grid or {}).get("paper"))
    if budget is not None:
        paths["budget"] = folder / "budget.png"
        plot_budget(budget, int(base["params"]), paths["budget"])
    results = {
        "command": command,
        "git_commit": machine.get("git_commit"),
        "machine": machine,
        "invocations": (grid or {}).get("invocations", []),
        **data,
        "cells": cells,
    }
    write_json(paths["results"], results)
    return paths
