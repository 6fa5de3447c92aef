"""Fig. 3 of a paper grid: one layer group pruned at a time, its PPL over the pruning run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.report.paper import _num, _save, _table, delta_pct, plt


def fig3_table(cells: list[dict[str, Any]], base_ppl: float, base_params: int) -> str:
    rows = []
    for c in sorted((c for c in cells if c["kind"] == "layer"), key=lambda c: c["id"]):
        curve = c.get("curve") or [[0, c["valid_ppl"]]]
        peak_x, peak = max(curve, key=lambda p: p[1])
        rows.append(
            [
                str(c.get("group")),
                f"{_num(c['group_params'])} ({100 * c['group_params'] / base_params:.0f} %)",
                f"{100 * c['group_sparsity']:.1f} %",
                _num(c["effective_params"]),
                f"{c['valid_ppl']:.2f}",
                f"{delta_pct(c['valid_ppl'], base_ppl):+.1f}",
                f"{peak:.2f} @ {peak_x:g}",
            ]
        )
    head = ["Layer group", "Group params", "Sparsity", "Model params", "Final PPL", "Δ%", "Peak"]
    return _table(head, rows)


def plot_fig3(cells: list[dict[str, Any]], base_ppl: float, path: Path) -> None:
    """Fig. 3: validation PPL over training while one layer group is pruned."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for c in sorted((c for c in cells if c["kind"] == "layer"), key=lambda c: c["id"]):
        pts = c.get("curve") or []
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", ms=3, label=str(c.get("group")))
    ax.axhline(base_ppl, color="k", ls="--", lw=1, label="dense baseline")
    ax.set(xlabel="pruning step", ylabel="validation PPL")
    ax.set_title("Fig. 3: pruning one layer group at a time")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
