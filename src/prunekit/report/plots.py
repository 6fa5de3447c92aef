"""PNG plots from saved metrics (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from prunekit.atomic import write_with  # noqa: E402


def _save(fig: Figure, path: str | Path) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def _legend_outside(ax: Axes) -> None:
    """The legend to the right of the axes, where it cannot cover a point."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")


def curves_figure(train: Sequence[Sequence[float]], valid: Sequence[Sequence[float]]) -> Figure:
    """Training loss and validation perplexity against the optimizer step (see `plot_curves`)."""
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps, losses = zip(*train, strict=True)
        ax_loss.plot(steps, losses, label="train")
    if valid:
        steps, losses = zip(*valid, strict=True)
        ax_loss.plot(steps, losses, "o-", label="valid")
        ax_ppl.plot(steps, [math.exp(min(v, 50)) for v in losses], "o-", color="C1")
    ax_loss.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="Loss")
    _legend_outside(ax_loss)
    ax_ppl.set(xlabel="step", ylabel="perplexity", title="Validation perplexity", yscale="log")
    for ax in (ax_loss, ax_ppl):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_curves(
    train: Sequence[Sequence[float]], valid: Sequence[Sequence[float]], path: str | Path
) -> None:
    """Plot training loss and validation perplexity against the optimizer step.

    Args:
        train: (step, mean loss) pairs.
        valid: (step, valid loss) pairs.
        path: the PNG to write (atomically).
    """
    _save(curves_figure(train, valid), path)


def ppl_vs_size_figure(
    series: dict[str, Sequence[Sequence[float]]],
    *,
    baseline: Sequence[float] | None = None,
    title: str = "Perplexity vs model size",
) -> Figure:
    """Validation perplexity against parameter count (see `plot_ppl_vs_size`)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in series.items():
        pts = sorted(points)
        ax.plot([p for p, _ in pts], [v for _, v in pts], "o-", label=label)
    if baseline is not None:
        ax.plot([baseline[0]], [baseline[1]], "k*", markersize=12, label="dense baseline")
    ax.set(xlabel="parameters", ylabel="validation perplexity", title=title, xscale="log")
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_ppl_vs_size(
    series: dict[str, Sequence[Sequence[float]]],
    path: str | Path,
    *,
    baseline: Sequence[float] | None = None,
    title: str = "Perplexity vs model size",
) -> None:
    """Plot validation perplexity against parameter count, one line per method.

    Args:
        series: label -> (params, ppl) points.
        path: the PNG to write (atomically).
        baseline: (params, ppl) of the dense model, drawn as a star.
    """
    _save(ppl_vs_size_figure(series, baseline=baseline, title=title), path)
