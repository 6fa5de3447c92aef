"""Seed 000's figures from saved results: the error-vs-parameters Pareto front of stage-2 models
(trace norm vs l2) and nu(W) during stage 1. Everything is read from the rows / nu.json files.

    text = lowrank_markdown(rows, metric="valid_ppl")        # table, front marked
    plot_pareto(rows, "pareto.png", metric="valid_ppl")
    plot_nu(json.load(open(".../stage1/nu.json"))["rows"], "nu.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prunekit.atomic import write_with  # noqa: E402


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (params, error) points: True where no other point has <= params and <= error with one
    of them strictly smaller (lower is better on both axes)."""
    out = []
    for i, (p, e) in enumerate(points):
        dominated = any(
            (q <= p and f <= e) and (q < p or f < e) for j, (q, f) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out


def _by_regularizer(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, list]:
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r["regularizer"], []).append((r["params"], r[metric]))
    return groups


def lowrank_markdown(rows: Sequence[Mapping[str, Any]], metric: str = "valid_loss") -> str:
    """One line per stage-2 model, sorted by size; `front` marks its regularizer's Pareto front
    and `all` the front over both regularizers."""
    groups = _by_regularizer(rows, metric)
    fronts = {k: dict(zip(v, pareto_front(v), strict=True)) for k, v in groups.items()}
    every = [(r["params"], r[metric]) for r in rows]
    overall = dict(zip(every, pareto_front(every), strict=True))
    lines = [
        f"| variant | regularizer | lambda_rec | lambda_nonrec | threshold | params | of dense "
        f"| {metric} | front | all |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["params"]):
        key = (r["params"], r[metric])
        lines.append(
            f"| {r['variant']} | {r['regularizer']} | {r['lambda_rec']:g} | "
            f"{r['lambda_nonrec']:g} | {r['threshold']:g} | {r['params']:,} | "
            f"{100 * r['params'] / r['dense_params']:.1f} % | {r[metric]:.4g} | "
            f"{'yes' if fronts[r['regularizer']][key] else ''} | {'yes' if overall[key] else ''} |"
        )
    return "\n".join(lines) + "\n"


def plot_pareto(
    rows: Sequence[Mapping[str, Any]], path: str | Path, *, metric: str = "valid_loss",
    dense: tuple[float, float] | None = None,
) -> None:  # fmt: skip
    """Scatter of `metric` vs parameters per regularizer, with each one's Pareto front drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (reg, points) in enumerate(sorted(_by_regularizer(rows, metric).items())):
        color = f"C{i}"
        ax.plot(*zip(*points, strict=True), "o", color=color, alpha=0.4, label=f"{reg} (all)")
        front = sorted(p for p, on in zip(points, pareto_front(points), strict=True) if on)
        ax.plot(*zip(*front, strict=True), "-", color=color, label=f"{reg} front")
    if dense is not None:
        ax.plot([dense[0]], [dense[1]], "k*", markersize=12, label="dense")
    ax.set(xlabel="parameters", ylabel=metric, xscale="log", title="Stage 2: error vs size")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_nu(nu_rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """nu(W) of every matrix against the stage-1 step (from nu.json's rows)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    steps = [r["step"] for r in nu_rows]
    for name in nu_rows[0]["nu"] if nu_rows else []:
        ax.plot(steps, [r["nu"][name] for r in nu_rows], label=name)
    ax.set(xlabel="step", ylabel="nu(W)", title="Nondimensional trace norm during stage 1",
           ylim=(0, 1))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
