"""Which differences at the seeded sizes exceed seed noise: Welch's t-test over the seeds.

Each comparison the paper's findings rest on (incremental vs one-shot, each criterion vs the
reference, each method vs from scratch and vs each other) is tested where both sides ran with
several seeds: t = (mean_a - mean_b) / sqrt(s_a²/n_a + s_b²/n_b) with Welch-Satterthwaite degrees
of freedom, against the two-sided 95 % critical value. A side with zero spread (a training-free
one-shot cell gives the same model for every seed) contributes no variance.
"""

from __future__ import annotations

import math
from typing import Any

from prunekit.report.paper import Agg, Key, Layout, _size_label, _table, delta_pct

TUNED = "one-shot + steps"  # the schedule under which report.paper keys Table 1's tuned one-shot

# two-sided 95 % critical values of Student's t, by degrees of freedom (1..30); 1.96 beyond
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_critical(dof: float) -> float:
    """Two-sided 95 % critical value for `dof` degrees of freedom (rounded down, at least 1)."""
    k = max(1, math.floor(dof))
    return T95[k - 1] if k <= len(T95) else 1.96


def welch(a: Agg, b: Agg) -> tuple[float, float] | None:
    """(t, degrees of freedom) of mean_a - mean_b; None when neither side has seed spread."""
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    if va + vb == 0:
        return None
    parts = [v**2 / (n - 1) for v, n in ((va, a.n), (vb, b.n)) if v > 0]
    return (a.mean - b.mean) / math.sqrt(va + vb), (va + vb) ** 2 / sum(parts)


def comparisons(lay: Layout, size: float) -> list[tuple[str, Key, Key]]:
    """(label, key of A, key of the reference B) for every comparison behind a finding."""
    c1, c3 = lay.t1_criterion, lay.t3_criterion

    def inc(crit: str, method: str = "unstructured") -> Key:
        return ("prune", "incremental", crit, method, size)

    out = [
        (
            f"incremental vs one-shot ({c1})",
            inc(c1),
            ("prune", "one-shot", c1, "unstructured", size),
        )
    ]
    tuned: Key = ("prune", TUNED, c1, "unstructured", size)  # present with paper.t1_finetuned
    out.append((f"incremental vs one-shot + {lay.prune_steps} steps ({c1})", inc(c1), tuned))
    ref = lay.criteria[0] if lay.criteria else None
    out += [(f"{c} vs {ref}", inc(c), inc(ref)) for c in lay.criteria[1:] if ref]
    scratch: Key = ("scratch", None, None, None, size)
    out += [(f"{m} vs from scratch", inc(c3, m), scratch) for m in lay.methods]
    for i, m in enumerate(lay.methods):
        out += [(f"{n} vs {m}", inc(c3, n), inc(c3, m)) for n in lay.methods[i + 1 :]]
    return out


def seed_checks(aggs: dict[Key, Agg], lay: Layout) -> list[dict[str, Any]]:
    """Every comparison with several seeds on at least one side, tested (see module doc)."""
    rows = []
    for size in lay.sizes:
        for label, ka, kb in comparisons(lay, size):
            a, b = aggs.get(ka), aggs.get(kb)
            if a is None or b is None or max(a.n, b.n) < 2:
                continue
            test = welch(a, b)
            row = {"size": size, "comparison": label, "a_mean": a.mean, "a_std": a.std,
                   "a_n": a.n, "b_mean": b.mean, "b_std": b.std, "b_n": b.n,
                   "delta_pct": delta_pct(a.mean, b.mean)}  # fmt: skip
            if test is None:
                row.update(t=None, dof=None, beyond_noise=a.mean != b.mean)
            else:
                t, dof = test
                row.update(t=t, dof=dof, beyond_noise=abs(t) > t_critical(dof))
            rows.append(row)
    return rows


def seed_section(rows: list[dict[str, Any]], base_params: int) -> str:
    """Markdown: one line per tested comparison."""
    if not rows:
        return ""
    head = ["Size", "Comparison (A vs B)", "A", "B", "Δ%", "t (dof)", "beyond seed noise?"]
    lines = []
    for r in rows:
        t = "—" if r["t"] is None else f"{r['t']:+.1f} ({r['dof']:.1f})"
        lines.append([
            _size_label(r["size"], base_params), r["comparison"],
            f"{r['a_mean']:.2f} ± {r['a_std']:.2f}", f"{r['b_mean']:.2f} ± {r['b_std']:.2f}",
            f"{r['delta_pct']:+.1f}", t, "**yes**" if r["beyond_noise"] else "no",
        ])  # fmt: skip
    intro = (
        "## Seeds: which differences are real\n\n"
        "Welch's t-test over the seeds (mean ± sample std, n per side in the tables above); "
        "'yes' when |t| exceeds the two-sided 95 % critical value for its degrees of freedom.\n"
    )
    return intro + "\n" + _table(head, lines)
