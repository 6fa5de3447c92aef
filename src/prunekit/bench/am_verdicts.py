"""Computed verdicts of `prunekit bench am-compress` on seeds 000 and 001, from result rows.

Every verdict is a dict {"claim", "verdict", "evidence"}; verdicts are "supported",
"contradicted", "not shown" (a tie within `tol`) or "not run" (rows missing). Lower is better for
every metric (CER, WER). A difference counts only when it exceeds `tol` relative: with a few
hundred test utterances, smaller differences are within noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]
BUDGETS = (0.1, 0.15, 0.2, 0.3, 0.5, 0.75)
TOL = 0.02  # relative difference below which two error rates tie
FEW_PERCENT = 0.05  # seed 001's "within a few %": at most 5 % relative worse than dense
LEARNED = 0.8  # a dense test CER above this: the models did not learn, nothing is compared


def best_within(rows: Sequence[Row], metric: str, budget: float) -> float | None:
    """Lowest `metric` among rows with params <= budget * dense_params (None: no such row)."""
    values = [r[metric] for r in rows if r["params"] <= budget * r["dense_params"]]
    values = [v for v in values if v is not None]
    return min(values) if values else None


def _winner(a: float, b: float, tol: float) -> str:
    """ "a", "b" or "tie": which error rate is lower by more than `tol` relative."""
    if a < b * (1 - tol):
        return "a"
    if b < a * (1 - tol):
        return "b"
    return "tie"


def compare_fronts(
    a: Sequence[Row], b: Sequence[Row], metric: str, budgets: Sequence[float] = BUDGETS,
    tol: float = TOL,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per parameter budget (fraction of dense): the best `metric` of `a` and of `b` within it
    and which wins; budgets where one side has no row are left out."""
    out = []
    for f in budgets:
        x, y = best_within(a, metric, f), best_within(b, metric, f)
        if x is not None and y is not None:
            out.append({"budget": f, "a": x, "b": y, "winner": _winner(x, y, tol)})
    return out


def _count(cmp: Sequence[Mapping[str, Any]], who: str) -> int:
    return sum(c["winner"] == who for c in cmp)


def front_verdict(
    tracenorm: Sequence[Row], l2: Sequence[Row], metric: str = "test_cer", tol: float = TOL
) -> dict[str, Any]:
    """Seed 000: trace-norm stage 1 gives a better error-vs-parameters front than l2."""
    claim = f"trace-norm stage 1 gives a better {metric}-vs-parameters front than l2"
    cmp = compare_fronts(tracenorm, l2, metric, tol=tol)
    if not cmp:
        return {"claim": claim, "verdict": "not run", "evidence": "no budget with rows of both"}
    wins, losses = _count(cmp, "a"), _count(cmp, "b")
    if wins > losses and wins * 2 >= len(cmp):
        verdict = "supported"
    elif losses > wins:
        verdict = "contradicted"
    else:
        verdict = "not shown"
    parts = [f"<= {c['budget']:.0%}: {c['a']:.4f} vs {c['b']:.4f}" for c in cmp]
    evidence = (f"best {metric}, trace norm vs l2, per budget (of dense params): "
                + "; ".join(parts) + f". Trace norm wins {wins}, l2 wins {losses}, "
                f"{len(cmp) - wins - losses} ties (tol {tol:.0%} relative).")  # fmt: skip
    return {"claim": claim, "verdict": verdict, "evidence": evidence, "budgets": cmp}


def _model_steps(row: Row) -> int:
    """Training steps behind one stage-2 model: its stage 1 plus its own stage 2."""
    return int(row["stage1_steps"]) + int(row["stage2_steps"])


def training_time_verdict(
    short: Sequence[Row], full: Sequence[Row], metric: str = "test_cer", tol: float = TOL
) -> dict[str, Any]:
    """Seed 000's shorter variant: a few epochs of trace-norm stage 1, then low rank: its front
    is no worse than the full stage 1's (same lambdas) at any parameter budget, and each of its
    models takes fewer training steps (its stage 1 plus its stage 2)."""
    claim = ("switching to low rank after a short trace-norm stage 1 reaches the full stage 1's "
             f"{metric} front in less training")  # fmt: skip
    cmp = compare_fronts(short, full, metric, tol=tol)
    if not cmp:
        return {"claim": claim, "verdict": "not run", "evidence": "no budget with both variants"}
    steps_short = max(_model_steps(r) for r in short)
    steps_full = min(_model_steps(r) for r in full)
    losses, wins = _count(cmp, "b"), _count(cmp, "a")
    cheaper = steps_short < steps_full
    if losses == 0 and cheaper:
        verdict = "supported"
    elif losses * 2 > len(cmp) or not cheaper:
        verdict = "contradicted"
    else:
        verdict = "not shown"
    parts = [f"<= {c['budget']:.0%}: {c['a']:.4f} vs {c['b']:.4f}" for c in cmp]
    evidence = (f"best {metric}, short vs full, per budget: " + "; ".join(parts)
                + f" (short better at {wins}, worse at {losses}, tol {tol:.0%}); training steps "
                f"per model: short <= {steps_short}, full >= {steps_full}.")  # fmt: skip
    return {"claim": claim, "verdict": verdict, "evidence": evidence, "budgets": cmp}


def untrained(claims: list[dict[str, Any]], dense_error: float, limit: float) -> list[dict]:
    """Every verdict replaced by "not shown" when the dense model's error is above `limit`
    (it did not learn, so no comparison between its compressions means anything)."""
    if dense_error <= limit:
        return claims
    why = f"the dense model did not learn (error {dense_error:.3f} > {limit:.2f}): train longer"
    return [{**c, "verdict": "not shown", "evidence": f"{why}. {c['evidence']}"} for c in claims]


def sparse_vs_dense_verdict(
    sparse: Row | None, dense: Row | None, metric: str = "test_cer", few: float = FEW_PERCENT
) -> dict[str, Any]:
    """Seed 001: ~90 % sparse (pruned during training) is within a few % of the dense model."""
    claim = f"~90 % sparse within {few:.0%} (relative {metric}) of dense at the same width"
    if sparse is None or dense is None:
        return {"claim": claim, "verdict": "not run", "evidence": "rows missing"}
    rel = sparse[metric] / dense[metric] - 1
    verdict = "supported" if rel <= few else "contradicted"
    evidence = (f"width {sparse['width']}: sparsity {sparse['sparsity']:.1%}, {metric} "
                f"{sparse[metric]:.4f} vs dense {dense[metric]:.4f} ({rel:+.1%})")  # fmt: skip
    return {"claim": claim, "verdict": verdict, "evidence": evidence, "relative": rel}


def larger_sparse_verdict(
    sparse_rows: Sequence[Row], dense_rows: Sequence[Row], metric: str = "test_cer",
    tol: float = TOL,
) -> dict[str, Any]:  # fmt: skip
    """Seed 001: a larger sparse model beats a smaller dense one with about as many non-zero
    parameters (the dense width whose parameter count is nearest the sparse model's)."""
    claim = f"a larger sparse model beats a smaller dense one with as many parameters ({metric})"
    lines, wins, losses = [], 0, 0
    for s in sparse_rows:
        smaller = [d for d in dense_rows if d["width"] < s["width"]]
        if not smaller:
            continue
        d = min(smaller, key=lambda d: abs(d["params"] - s["params"]))
        w = _winner(s[metric], d[metric], tol)
        wins, losses = wins + (w == "a"), losses + (w == "b")
        lines.append(
            f"sparse h{s['width']} ({s['params']:,} non-zero) {s[metric]:.4f} vs dense "
            f"h{d['width']} ({d['params']:,}) {d[metric]:.4f}"
        )
    if not lines:
        return {"claim": claim, "verdict": "not run", "evidence": "no smaller dense model"}
    verdict = "supported" if wins and not losses else ("contradicted" if losses else "not shown")
    return {"claim": claim, "verdict": verdict, "evidence": "; ".join(lines) + "."}
