"""Seed 004's published numbers next to a grid's, and a verdict for each of the paper's findings.

The paper (Emili et al., "Neural Language Model Pruning for ASR", ICASSP 2024) prunes a 20M
Transformer NNLM to 10M / 5M / 2M / 1M parameters: 50 / 25 / 10 / 5 % of its size, the sizes of
prunekit's grid. Its perplexities (Tables 1-3) are on its own data and scale, so the comparison is
of relative changes (Δ%) and of orderings, never of absolute values. A finding is "reproduced" when
it holds at every size the grid measured, "reversed" when its opposite does, else "partly".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prunekit.report.paper import DASH, Agg, Key, Layout, _size_label, _table, delta_pct

SIZES = (0.5, 0.25, 0.1, 0.05)
T1 = {0.5: (16.5, 16.2), 0.25: (19.8, 17.2), 0.1: (33.1, 19.6), 0.05: (64.0, 22.5)}
"""Table 1: (one-shot, incremental) PPL, magnitude, unstructured."""
T2 = {0.5: (16.2, 16.2), 0.25: (17.2, 17.0), 0.1: (19.6, 19.3), 0.05: (22.5, 22.1)}
"""Table 2: (magnitude, data-driven) PPL, incremental, unstructured."""
T3 = {
    "scratch": {0.5: 17.1, 0.25: 18.5, 0.1: 21.3, 0.05: 24.6},
    "unstructured": {0.5: 16.2, 0.25: 17.0, 0.1: 19.3, 0.05: 22.1},
    "structured": {0.5: 19.8, 0.25: 26.3, 0.1: 41.9, 0.05: 60.6},
    "factorized": {0.5: 17.6, 0.25: 19.2, 0.1: 22.9, 0.05: 28.0},
}
"""Table 3: PPL of data-driven incremental pruning by method, and of from-scratch models."""

# Seed 004 §4.3, ASR with the NNLM in shallow fusion (minus the internal LM), WER in %, on its
# dictation and voice-assistant (VA) test sets; `*` in the paper = not significant (p > 0.005).
T4 = {
    "dictation": {0.5: (3.49, 3.48), 0.25: (3.57, 3.51), 0.1: (3.70, 3.62), 0.05: (3.78, 3.69)},
    "va": {0.5: (4.22, 4.21), 0.25: (4.31, 4.28), 0.1: (4.44, 4.35), 0.05: (4.57, 4.43)},
}
"""Table 4: (one-shot, incremental) WER by size."""
T4_BASELINE = {"dictation": 3.47, "va": 4.24}
"""Table 4: WER with the dense 20M NNLM."""
T4_NOT_SIGNIFICANT = {"dictation": (0.5,), "va": (0.5, 0.25)}
"""Table 4: sizes whose incremental vs one-shot change is not significant."""
T5 = {
    "scratch-100": (3.47, 4.24),
    "scratch-10": (3.53, 4.27),
    "unstructured": (3.48, 4.21),
    "structured": (4.21, 5.26),
    "factorized": (3.54, 4.29),
    "no-lm": (3.77, 4.47),
}
"""Table 5: (dictation, VA) WER. The pruned rows are incremental data-driven pruning to 10M
parameters, i.e. 50 % of the 20M baseline, and "10M-scratch" is trained at that size; only
factorized is not significant vs 10M-scratch."""
T6 = {"dictation": (-1.3, -0.7, -2.6, -1.2), "va": (0.0, 1.3, -2.0, -1.9)}
"""Table 6: relative WER change (%) of the pruned (unstructured, incremental, data-driven) vs the
from-scratch 10M NNLM (50 % of the baseline) per word-frequency quartile, most frequent (25 %) to
rarest (100 %)."""


def _ppl(aggs: dict[Key, Agg], key: Key) -> float | None:
    a = aggs.get(key)
    return None if a is None else a.mean


def _d(new: float | None, ref: float | None) -> str:
    return DASH if new is None or ref is None else f"{delta_pct(new, ref):+.1f}"


def _f(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


def verdict(holds: Sequence[bool], opposite: Sequence[bool]) -> str:
    """'reproduced' (holds everywhere), 'reversed' (its opposite does), 'not reproduced' (holds
    nowhere), 'partly (k of n sizes)' or 'not measured yet'."""
    if not holds:
        return "not measured yet"
    if all(holds):
        return "reproduced"
    if all(opposite):
        return "reversed"
    if not any(holds):
        return "not reproduced"
    return f"partly ({sum(holds)} of {len(holds)} sizes)"


def _range(values: Sequence[float]) -> str:
    return f"{min(values):+.1f} % to {max(values):+.1f} %" if values else DASH


def _paper_range(new: dict[float, float], ref: dict[float, float], suffix: str = "") -> str:
    return _range([delta_pct(new[s], ref[s]) for s in SIZES]) + suffix


def _sizes(lay: Layout) -> list[float]:
    return [s for s in SIZES if any(abs(s - t) < 1e-9 for t in lay.sizes)]


def compare(
    aggs: dict[Key, Agg],
    lay: Layout,
    base_params: int,
    cells: list[dict[str, Any]],
    notes: dict[str, str] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """(Markdown section, findings as JSON-able dicts) comparing the grid with the paper.

    `notes` (finding id -> text) say how a verdict depends on the budget (see `paper_budget`);
    the ids are 'schedulers', 'criteria', 'scratch', 'structured', 'factorized', 'finetune',
    'output', 'attention'.
    """
    sizes = _sizes(lay)
    crit, t3c = lay.t1_criterion, lay.t3_criterion
    ref_crit = lay.criteria[0] if lay.criteria else "magnitude"
    dd = next((c for c in lay.criteria if c == "taylor"), None)

    def pr(sched: str, c: str | None, m: str, s: float) -> float | None:
        return _ppl(aggs, ("prune", sched, c, m, s))

    one = {s: pr("one-shot", crit, "unstructured", s) for s in sizes}
    inc = {s: pr("incremental", crit, "unstructured", s) for s in sizes}
    mag = {s: pr("incremental", ref_crit, "unstructured", s) for s in sizes}
    tay = {s: pr("incremental", dd, "unstructured", s) if dd else None for s in sizes}
    scratch = {s: _ppl(aggs, ("scratch", None, None, None, s)) for s in sizes}
    meth = {m: {s: pr("incremental", t3c, m, s) for s in sizes} for m in lay.methods}

    rows1 = [[_size_label(s, base_params), f"{T1[s][0]:.1f} / {T1[s][1]:.1f}",
              _d(T1[s][1], T1[s][0]), f"{_f(one[s])} / {_f(inc[s])}", _d(inc[s], one[s])]
             for s in sizes]  # fmt: skip
    rows2 = [[_size_label(s, base_params), f"{T2[s][0]:.1f} / {T2[s][1]:.1f}",
              _d(T2[s][1], T2[s][0]), f"{_f(mag[s])} / {_f(tay[s])}", _d(tay[s], mag[s])]
             for s in sizes]  # fmt: skip
    rows3 = []
    for m in ("unstructured", "structured", "factorized"):
        if m in meth:
            rows3.append([m, *(f"{_d(T3[m][s], T3['scratch'][s])} / {_d(meth[m][s], scratch[s])}"
                               for s in sizes)])  # fmt: skip

    def pairs(a: dict, b: dict, test: Callable[[float, float], bool]) -> list[bool]:
        return [test(a[s], b[s]) for s in sizes if a[s] is not None and b[s] is not None]

    def deltas(a: dict, b: dict) -> list[float]:
        return [delta_pct(a[s], b[s]) for s in sizes if a[s] is not None and b[s] is not None]

    findings = []

    def add(
        fid: str, text: str, paper: str, holds: list[bool], opposite: list[bool], ours: str
    ) -> None:
        findings.append({"id": fid, "finding": text, "paper": paper, "ours": ours,
                         "verdict": verdict(holds, opposite),
                         "budget": (notes or {}).get(fid)})  # fmt: skip

    lt, gt = (lambda a, b: a < b), (lambda a, b: a > b)
    p1 = _paper_range({s: v[1] for s, v in T1.items()}, {s: v[0] for s, v in T1.items()})
    p2 = _paper_range({s: v[1] for s, v in T2.items()}, {s: v[0] for s, v in T2.items()})
    add("schedulers", "Incremental pruning beats one-shot at every size", p1,
        pairs(inc, one, lt), pairs(inc, one, gt), _range(deltas(inc, one)))  # fmt: skip
    add("criteria", "The data-driven (Taylor) criterion beats magnitude, by small margins", p2,
        pairs(tay, mag, lt), pairs(tay, mag, gt), _range(deltas(tay, mag)))  # fmt: skip
    un = meth.get("unstructured", {s: None for s in sizes})
    add("scratch", "Pruning a large model (unstructured) beats training that size from scratch",
        _paper_range(T3["unstructured"], T3["scratch"]), pairs(un, scratch, lt),
        pairs(un, scratch, gt), _range(deltas(un, scratch)))  # fmt: skip
    st, fa = (meth.get(m, {s: None for s in sizes}) for m in ("structured", "factorized"))
    worst = [st[s] > max(un[s], fa[s]) for s in sizes if None not in (st[s], un[s], fa[s])]
    add("structured", "Structured pruning is the worst method",
        _paper_range(T3["structured"], T3["scratch"], " vs scratch"), worst,
        [not w for w in worst], _range(deltas(st, scratch)) + " vs scratch")  # fmt: skip
    mid = [un[s] < fa[s] < st[s] for s in sizes if None not in (st[s], un[s], fa[s])]
    add("factorized", "Factorized lies between unstructured and structured",
        _paper_range(T3["factorized"], T3["scratch"], " vs scratch"),
        mid, [False] * len(mid), _range(deltas(fa, scratch)) + " vs scratch")  # fmt: skip
    last = _fig2_last(cells)
    add("finetune", "Incremental stays ahead of one-shot after further fine-tuning",
        "35 % relative at 1M after 30 epochs", [d < 0 for d in last.values()],
        [d > 0 for d in last.values()],
        _range(list(last.values())) + " at the last epoch")  # fmt: skip
    layer = _fig3_deltas(cells)
    if layer:
        top = max(layer, key=layer.get)
        add("output", "Pruning the output projection hurts most", "output layer worst",
            [top == "output"], [False],
            ", ".join(f"{g} {d:+.1f} %" for g, d in sorted(layer.items())))  # fmt: skip
        if "attention" in layer:
            add("attention", "Attention pruned to 75 % costs < 2 % PPL", "< 2 %",
                [layer["attention"] < 2.0], [False], f"{layer['attention']:+.1f} %")  # fmt: skip

    lines = [
        "## Side by side with seed 004's published numbers\n",
        "The paper's PPL are for its 20M model on its data, ours for this grid; compare the Δ% "
        "columns and the orderings. Sizes are fractions of each baseline (paper: 10M / 5M / "
        "2M / 1M of 20M).\n",
        f"Table 1 (one-shot / incremental, {crit}):\n",
        _table(["Model size", "paper", "paper Δ%", "ours", "ours Δ%"], rows1),
        f"Table 2 ({ref_crit} / data-driven, incremental):\n",
        _table(["Model size", "paper", "paper Δ%", "ours", "ours Δ%"], rows2),
        "Table 3 (Δ% vs from scratch, paper / ours):\n",
        _table(["Method", *(_size_label(s, base_params) for s in sizes)], rows3),
        "Findings:\n",
        findings_table(findings),
    ]  # fmt: skip
    return "\n".join(lines), findings


def findings_table(findings: list[dict[str, Any]]) -> str:
    """Markdown: finding, paper, ours, verdict (and, where any is known, budget dependence)."""
    head = ["Paper's finding", "paper", "ours", "verdict"]
    rows = [[f["finding"], f["paper"], f["ours"], f"**{f['verdict']}**"] for f in findings]
    if any(f.get("budget") for f in findings):
        head.append("budget dependence")
        rows = [[*r, f.get("budget") or DASH] for r, f in zip(rows, findings, strict=True)]
    return _table(head, rows)


def _fig2_last(cells: list[dict[str, Any]]) -> dict[float, float]:
    from prunekit.report.paper_fig2 import fig2_series

    return {s: pts[-1][1] for s, pts in fig2_series(cells).items() if pts}


def _fig3_deltas(cells: list[dict[str, Any]]) -> dict[str, float]:
    base = next((c for c in cells if c["kind"] == "baseline"), None)
    if base is None:
        return {}
    return {
        str(c.get("group")): delta_pct(c["valid_ppl"], base["valid_ppl"])
        for c in cells
        if c["kind"] == "layer"
    }
