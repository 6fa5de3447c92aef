"""The pruning-budget axis of a paper grid (`paper.budget`): Δ% PPL of pruned vs from-scratch
models as the pruning run gets longer, what each costs, and where a verdict turns with the budget.

Every incremental pruning cell of the budget criterion at a budget size is a point (the Tables 1-3
cells are the points at prune.steps). Each is compared with the from-scratch model of that size
trained as long as the baseline (Table 3's) and with one trained for the baseline's steps plus the
pruning run's (`scratch-...-plusN`: compute-matched in optimizer steps). CPU seconds are each run's
process CPU time (all threads); "≈" marks a run resumed from an earlier call's checkpoint, whose
CPU time is scaled up from the last call's by its share of the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit.report.paper import (
    DASH,
    Agg,
    Layout,
    _key,
    _save,
    _size_label,
    _table,
    aggregate,
    delta_pct,
    fmt_ppl,
    plt,
)
from prunekit.report.seeds import t_critical, welch

METHOD_ORDER = {"unstructured": 0, "structured": 1, "factorized": 2}


def run_steps(cell: dict[str, Any]) -> int:
    """Steps of a cell's own run (a one-shot cell: its training after pruning); for a
    from-scratch cell, the pruning steps it is matched to (0: Table 3's model)."""
    if "budget_steps" in cell:
        return int(cell["budget_steps"])
    if cell["kind"] == "scratch":
        return 0
    return int(cell.get("step") or 0)


def _bkey(cell: dict[str, Any]) -> tuple:
    return (*_key(cell), run_steps(cell))


def budget_aggs(cells: list[dict[str, Any]], metric: str) -> dict[tuple, Agg]:
    """(kind, schedule, criterion, method, size, run steps) -> Agg over the seeds, every cell."""
    return aggregate(cells, metric, key=_bkey, keep=lambda c: c["kind"] in ("prune", "scratch"))


def cpu_seconds(cell: dict[str, Any]) -> tuple[float, bool] | None:
    """(process CPU seconds of the cell's whole run, whether that is an estimate), or None."""
    cpu = cell.get("cpu_seconds_last_call")
    if cpu is None:
        return None
    total = cell.get("steps") or cell.get("step") or 0
    resumed = cell.get("resumed_from_step")
    if resumed and total > resumed:
        return cpu * total / (total - resumed), True
    if resumed is None and cell["kind"] == "baseline":  # older records: training outlasting the
        train, wall = cell.get("train_seconds"), cell.get("wall_seconds_last_call")  # last call
        if train and wall and train > wall:  # means an earlier call ran part of it
            return cpu * train / wall, True
    return cpu, False


def cpu_by_key(cells: list[dict[str, Any]]) -> dict[tuple, tuple[float, bool]]:
    """Mean CPU seconds over the seeds per budget key (an estimate if any seed's is)."""
    groups: dict[tuple, list[tuple[float, bool]]] = {}
    for c in cells:
        got = cpu_seconds(c) if c["kind"] in ("prune", "scratch") else None
        if got is not None:
            groups.setdefault(_bkey(c), []).append(got)
    return {k: (sum(s for s, _ in v) / len(v), any(e for _, e in v)) for k, v in groups.items()}


@dataclass
class BudgetRow:
    """One size at one pruning budget N: the pruned models and their from-scratch references."""

    size: float
    steps: int
    scratch: Agg | None  # trained as long as the baseline
    matched: Agg | None  # trained for the baseline's steps + N
    pruned: dict[str, Agg | None] = field(default_factory=dict)  # method -> Agg
    cpu: dict[str, tuple[float, bool]] = field(default_factory=dict)  # method / "matched"


@dataclass
class Budget:
    """The budget axis of a grid: its rows and what they share."""

    criterion: str
    methods: list[str]
    rows: list[BudgetRow]
    base_steps: int
    base_cpu: tuple[float, bool] | None


def budget_axis(
    cells: list[dict[str, Any]], metric: str, paper: dict[str, Any] | None
) -> Budget | None:
    """The grid's budget axis, or None before any budget cell has finished."""
    axis = [c for c in cells if "budget_steps" in c and c.get("schedule") != "one-shot"]
    if not axis:
        return None
    axis_prune = [c for c in axis if c["kind"] == "prune"]
    paper = paper or {}
    crit = ((paper.get("budget") or {}).get("criterion") or paper.get("t3_criterion")) or (
        axis_prune[0]["criterion"] if axis_prune else "taylor"
    )
    methods = list((paper.get("budget") or {}).get("methods") or []) or sorted(
        {c["method"] for c in axis_prune}, key=lambda m: (METHOD_ORDER.get(m, 9), m)
    )
    aggs, cpu = budget_aggs(cells, metric), cpu_by_key(cells)
    base = next(c for c in cells if c["kind"] == "baseline")
    rows = []
    for size in sorted({round(c["size"], 6) for c in axis}, reverse=True):
        steps = {k[5] for k in aggs if k[4] == size and k[0] == "scratch" and k[5] > 0}
        steps |= {k[5] for k in aggs if k[4] == size and k[:3] == ("prune", "incremental", crit)}
        for n in sorted(steps):
            keys = {m: ("prune", "incremental", crit, m, size, n) for m in methods}
            matched = ("scratch", None, None, None, size, n)
            scratch = aggs.get(("scratch", None, None, None, size, 0))
            row = BudgetRow(
                size, n, scratch, aggs.get(matched), {m: aggs.get(k) for m, k in keys.items()}
            )
            row.cpu = {m: cpu[k] for m, k in {**keys, "matched": matched}.items() if k in cpu}
            rows.append(row)
    return Budget(crit, methods, rows, int(base.get("steps") or 0), cpu_seconds(base))


def _delta(a: Agg | None, ref: Agg | None) -> str:
    """Δ% of a vs ref, marked '(n.s.)' when seeds on either side say it is within seed noise."""
    if a is None or ref is None:
        return DASH
    out = f"{delta_pct(a.mean, ref.mean):+.1f}"
    test = welch(a, ref) if max(a.n, ref.n) > 1 else None
    if test is not None and abs(test[0]) <= t_critical(test[1]):
        out += " (n.s.)"
    return out


def _cpu(got: tuple[float, bool] | None) -> str:
    return DASH if got is None else f"{'≈' if got[1] else ''}{got[0]:,.0f}"


def budget_table(b: Budget, base_params: int) -> str:
    """Markdown: per size and pruning budget N, each method's PPL and Δ% against both scratch
    models, and the CPU seconds of each run."""
    t = b.base_steps
    head = ["Size", "Pruning steps N", f"Scratch, {t} + N steps"]
    for m in b.methods:
        head += [m, f"Δ% vs scratch ({t})", f"Δ% vs scratch ({t} + N)"]
    head.append("CPU s: " + " / ".join([*b.methods, f"scratch {t} + N"]))
    rows = []
    for r in b.rows:
        row = [_size_label(r.size, base_params), str(r.steps), fmt_ppl(r.matched)]
        for m in b.methods:
            a = r.pruned.get(m)
            row += [fmt_ppl(a), _delta(a, r.scratch), _delta(a, r.matched)]
        row.append(" / ".join(_cpu(r.cpu.get(k)) for k in [*b.methods, "matched"]))
        rows.append(row)
    return _table(head, rows)


def budget_section(b: Budget, base_params: int) -> str:
    """The report's budget section: what is compared, the table, the plot."""
    scratch = {r.size: r.scratch for r in b.rows}
    refs = ", ".join(f"{_size_label(s, base_params)} {fmt_ppl(a)}" for s, a in scratch.items())
    intro = (
        f"## Pruning budget: Δ% vs from scratch by pruning steps ({b.criterion}, incremental)\n\n"
        f"Each pruned model starts from the baseline ({b.base_steps} steps, {_cpu(b.base_cpu)} "
        "CPU s, shared by every size and budget) and prunes over N steps (the same share of them "
        f"pruning). 'Scratch ({b.base_steps})' is Table 3's model of that size ({refs}); "
        f"'scratch ({b.base_steps} + N)' is trained for as many steps as the baseline and the "
        "pruning run together. Δ% < 0: pruning wins. '(n.s.)': within seed noise (Welch's t, "
        "95 %). CPU s: process CPU seconds of each run, mean over seeds; ≈: resumed, scaled.\n"
    )
    return intro + "\n" + budget_table(b, base_params) + "\n![Budget](budget.png)\n"


def deltas(b: Budget, size: float, method: str, ref: str) -> list[tuple[int, float]]:
    """[(N, Δ% of `method` vs the `ref` scratch model: 'scratch' or 'matched')] at `size`."""
    out = []
    for r in b.rows:
        a, base = r.pruned.get(method), getattr(r, ref)
        if r.size == size and a is not None and base is not None:
            out.append((r.steps, delta_pct(a.mean, base.mean)))
    return out


def plot_budget(b: Budget, base_params: int, path: Path) -> None:
    """Δ% vs pruning steps (log 2): solid against Table 3's scratch model, dashed against the
    compute-matched one; one colour per size and method."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    pairs = [(s, m) for s in dict.fromkeys(r.size for r in b.rows) for m in b.methods]
    for i, (size, method) in enumerate(pairs):
        label = f"{_size_label(size, base_params)} {method}"
        refs = (("scratch", "o-", f" vs scratch {b.base_steps}"),
                ("matched", "s--", f" vs scratch {b.base_steps} + N"))  # fmt: skip
        for ref, style, tag in refs:
            pts = deltas(b, size, method, ref)
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=f"C{i}", label=label + tag)
    ax.axhline(0, color="k", lw=0.8)
    steps = sorted({r.steps for r in b.rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(n) for n in steps])
    ax.minorticks_off()
    ax.set(xlabel="pruning steps N", ylabel="Δ% PPL vs from scratch")
    ax.set_title(f"Pruned vs from scratch by pruning budget ({b.criterion})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    _save(fig, path)


# ------------------------------------------------------------------ budget-dependent verdicts


def threshold(points: list[tuple[int, float]]) -> tuple[str, bool]:
    """(where Δ% < 0 holds along the budgets [(N, Δ%)], whether that differs between budgets).

    Example:
        >>> threshold([(500, 16.7), (1000, 4.0), (2000, -3.1), (4000, -5.0)])[0]
        'only with >= 2000 pruning steps (-3.1 % at 2000, -5.0 % at 4000)'
    """
    pts = sorted(points)
    holds = [d < 0 for _, d in pts]
    if all(holds):
        return f"at every budget ({pts[0][0]}–{pts[-1][0]} steps)", False
    if not any(holds):
        n, d = min(pts, key=lambda p: p[1])
        return f"at no budget up to {pts[-1][0]} steps (best {d:+.1f} % at {n})", False
    first = next((i for i in range(len(pts)) if all(holds[i:])), None)
    if first is not None:
        shown = [pts[first], pts[-1]] if first < len(pts) - 1 else [pts[first]]
        where = ", ".join(f"{d:+.1f} % at {n}" for n, d in shown)
        return f"only with >= {pts[first][0]} pruning steps ({where})", True
    ok = ", ".join(str(n) for (n, _), h in zip(pts, holds, strict=True) if h)
    return f"at {ok} steps only (not monotone in the budget)", True


def method_note(b: Budget, method: str) -> str | None:
    """'depends on the budget: 10 %: only with >= 2000 ...' for `method` vs both scratch models."""
    parts, depends = [], False
    for ref, name in (("scratch", f"vs scratch ({b.base_steps})"),
                      ("matched", f"vs scratch ({b.base_steps} + N)")):  # fmt: skip
        per_size = []
        for size in dict.fromkeys(r.size for r in b.rows):
            pts = deltas(b, size, method, ref)
            if pts:
                text, turns = threshold(pts)
                per_size.append(f"{100 * size:g} %: {text}")
                depends |= turns
        if per_size:
            parts.append(f"{name}: " + "; ".join(per_size))
    if not parts:
        return None
    lead = "**depends on the budget**: " if depends else "same at every budget measured: "
    return lead + ". ".join(parts)


def oneshot_note(
    tuned: dict[float, Agg], inc: dict[float, Agg], free: dict[float, Agg], steps: int | None
) -> str | None:
    """Incremental vs one-shot followed by the incremental run's training steps; it 'depends on
    the budget' where incremental wins against the training-free one-shot (`free`) but not
    against the trained one, or the other way round."""
    pairs = [(s, delta_pct(inc[s].mean, tuned[s].mean)) for s in tuned if s in inc]
    if not pairs:
        return None
    wins = sum(d < 0 for _, d in pairs)
    turns = any((inc[s].mean < free[s].mean) != (d < 0) for s, d in pairs if s in free)
    lo, hi = min(d for _, d in pairs), max(d for _, d in pairs)
    lead = "**depends on the budget**: " if turns else ""
    return (
        f"{lead}vs one-shot + {steps or '?'} training steps (as many as the incremental run): "
        f"{lo:+.1f} % to {hi:+.1f} %, incremental ahead at {wins} of {len(pairs)} sizes"
    )


def tuned_oneshot(aggs_b: dict[tuple, Agg], lay: Layout) -> dict[float, Agg]:
    """size -> one-shot pruning followed by as many training steps as the incremental run."""
    if not lay.prune_steps:
        return {}
    out = {}
    for s in lay.sizes:
        a = aggs_b.get(("prune", "one-shot", lay.t1_criterion, "unstructured", s, lay.prune_steps))
        if a is not None:
            out[s] = a
    return out


def fig2_note(flats: dict[float, Any]) -> str | None:
    """Where the Fig. 2 gap flattened, per size (see `paper_fig2.flatness`)."""
    parts = []
    for size, f in flats.items():
        if f is None:
            continue
        where = (
            f"flat from epoch {f.flat_from:g}"
            if f.flat_from is not None
            else f"still moving at epoch {f.last_epoch:g} ({f.last_move:.1f} points "
            f"over the last {f.window:g})"
        )
        parts.append(f"{100 * size:g} %: {where}")
    return "fine-tuning length: " + "; ".join(parts) if parts else None


def finding_notes(
    aggs: dict[Any, Agg],
    lay: Layout,
    tuned: dict[float, Agg],
    budget: Budget | None,
    flats: dict[float, Any],
) -> dict[str, str]:
    """Finding id -> how its verdict depends on the budget (see `published.compare`)."""

    def t1(schedule: str) -> dict[float, Agg]:
        keys = {s: ("prune", schedule, lay.t1_criterion, "unstructured", s) for s in lay.sizes}
        return {s: aggs[k] for s, k in keys.items() if k in aggs}

    notes = {
        "schedulers": oneshot_note(tuned, t1("incremental"), t1("one-shot"), lay.prune_steps),
        "finetune": fig2_note(flats),
    }
    if budget is not None:
        for fid, method in (("scratch", "unstructured"), ("factorized", "factorized")):
            if method in budget.methods:
                notes[fid] = method_note(budget, method)
    return {k: v for k, v in notes.items() if v}
