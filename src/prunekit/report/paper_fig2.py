"""Fig. 2 of a paper grid: the gap between incremental and one-shot pruning over further
fine-tuning, and where it stops moving.

"Flat" is defined on the gap g(e) = Δ% PPL of incremental vs one-shot at fine-tuning epoch e: the
gap is flat from epoch e0 when, for every measured epoch e >= e0 (with e0 >= `window`), the gap
stayed within `tol` percentage points over the epochs [e - window, e]. The first such e0 is where
it flattened; if the last window still moves more than `tol`, the gap is still moving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.report.paper import DASH, _save, _size_label, _table, delta_pct, plt

FLAT_POINTS = 1.0  # tol: percentage points
FLAT_EPOCHS = 3.0  # window: epochs
MAX_COLUMNS = 12  # epochs shown in the table (all of them go to results.json)

Series = dict[float, list[tuple[float, float]]]


def fig2_series(cells: list[dict[str, Any]]) -> Series:
    """size -> [(epoch, Δ% of incremental vs one-shot PPL)] over the fine-tuning curves."""
    curves: dict[tuple[float, str], dict[float, float]] = {}
    for c in cells:
        if c["kind"] == "finetune" and c.get("curve"):
            points = {round(x, 4): y for x, y in c["curve"]}
            curves[(round(c["size"], 6), c["schedule"])] = points
    out = {}
    for (size, sched), inc in curves.items():
        one = curves.get((size, "one-shot"))
        if sched != "incremental" or one is None:
            continue
        xs = sorted(set(inc) & set(one))
        out[size] = [(x, delta_pct(inc[x], one[x])) for x in xs]
    return dict(sorted(out.items(), reverse=True))


@dataclass
class Flatness:
    """Where one size's gap stopped moving (`flat_from`), or how much it still moves."""

    flat_from: float | None  # first epoch of the flat stretch; None = still moving
    last_epoch: float
    last_gap: float
    last_move: float  # points the gap moved over the last window (max - min)
    window: float
    tol: float


def flatness(points: list[tuple[float, float]], window: float, tol: float) -> Flatness | None:
    """The flat stretch of `points` [(epoch, gap)] (see module doc); None with no full window.

    Example:
        >>> flatness([(0, -50.0), (1, -10.0), (2, -9.5), (3, -9.4), (4, -9.2)], 2, 1).flat_from
        3.0
    """
    pts = sorted(points)
    if not pts or pts[-1][0] - pts[0][0] < window - 1e-9:
        return None

    def move(end: float) -> float:
        gaps = [g for e, g in pts if end - window - 1e-9 <= e <= end + 1e-9]
        return max(gaps) - min(gaps)

    ends = [e for e, _ in pts if e - pts[0][0] >= window - 1e-9]
    flat_from = None
    for e in ends:  # the last window that moved resets the stretch
        if move(e) >= tol:
            flat_from = None
        elif flat_from is None:
            flat_from = float(e)
    last_e, last_g = pts[-1]
    return Flatness(flat_from, float(last_e), last_g, move(last_e), window, tol)


def flat_lines(series: Series, base: int, window: float, tol: float) -> str:
    """Markdown: per size, where the gap flattened or how much it still moves."""
    lines = [
        f"Where the gap stops moving (it moves < {tol:g} point(s) within every {window:g}-epoch "
        "window from that epoch on):\n"
    ]
    for size, pts in series.items():
        f = flatness(pts, window, tol)
        label = _size_label(size, base)
        if f is None:
            lines.append(
                f"- {label}: fewer than {window:g} epochs measured; run Fig. 2 longer with "
                "`--set paper.fig2.extra_epochs=N`"
            )
        elif f.flat_from is not None:
            lines.append(
                f"- {label}: flat from epoch {f.flat_from:g} (gap {f.last_gap:+.1f} % at epoch "
                f"{f.last_epoch:g}; moved {f.last_move:.1f} points over the last {window:g})"
            )
        else:
            lines.append(
                f"- {label}: still moving: {f.last_move:.1f} points over epochs "
                f"{f.last_epoch - window:g}–{f.last_epoch:g} (gap {f.last_gap:+.1f} %); run "
                "Fig. 2 longer with `--set paper.fig2.extra_epochs=N`"
            )
    return "\n".join(lines) + "\n"


def flat_summary(series: Series, window: float, tol: float) -> dict[float, Flatness | None]:
    """size -> Flatness (for results.json and the findings)."""
    return {size: flatness(pts, window, tol) for size, pts in series.items()}


def _shown_epochs(epochs: list[float]) -> list[float]:
    """All epochs, or (when there are many) the first four, then evenly spaced, and the last."""
    if len(epochs) <= MAX_COLUMNS:
        return epochs
    head, rest = epochs[:4], epochs[4:]
    step = max(1, round(len(rest) / (MAX_COLUMNS - 5)))
    return sorted({*head, *rest[step - 1 :: step], epochs[-1]})


def fig2_table(series: Series, base: int) -> str:
    epochs = _shown_epochs(sorted({x for pts in series.values() for x, _ in pts}))
    rows = []
    for size, pts in series.items():
        by = dict(pts)
        rows.append(
            [_size_label(size, base), *(f"{by[e]:+.1f}" if e in by else DASH for e in epochs)]
        )
    return _table(["Model size", *(f"epoch {e:g}" for e in epochs)], rows)


def plot_fig2(series: Series, base: int, path: Path) -> None:
    """Fig. 2: relative PPL change of incremental vs one-shot over further fine-tuning."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for size, pts in series.items():
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", label=_size_label(size, base))
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="fine-tuning epoch", ylabel="Δ% PPL, incremental vs one-shot")
    ax.set_title("Fig. 2: one-shot vs incremental during fine-tuning")
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    _save(fig, path)


def schedule_line(cells: list[dict[str, Any]]) -> str:
    """How the Fig. 2 cells' learning rate ran (cosine, then constant when extended)."""
    phases = next((c["lr_phases"] for c in cells if c.get("lr_phases")), None)
    if not phases or len(phases) < 2:
        return ""
    cos, hold = phases[0], phases[-1]
    return (
        f"Fine-tuning: cosine decay from lr {cos['lr']:g} over epochs 0–{cos['until_epoch']:g}, "
        f"then a constant lr {hold['lr']:g} up to epoch {hold['until_epoch']:g} "
        "(`paper.fig2.extra_epochs`).\n"
    )


def fig2_section(
    cells: list[dict[str, Any]], series: Series, base: int, window: float, tol: float
) -> str:
    """The report's Fig. 2 section: the gap by epoch, where it flattened, the plot."""
    head = "## Fig. 2: Δ% PPL of incremental vs one-shot during further fine-tuning\n"
    if not series:
        return head + "\nNo fine-tuning cells yet.\n\n![Fig. 2](fig2_finetune.png)\n"
    body = [fig2_table(series, base), schedule_line(cells), flat_lines(series, base, window, tol)]
    return head + "\n" + "\n".join(b for b in body if b) + "\n![Fig. 2](fig2_finetune.png)\n"
