"""Markdown tables of compression results, built from the saved rows alone."""

from __future__ import annotations

from typing import Any


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def compression_table(baseline: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """One line per (variant, size): size, perplexity and its change, FLOPs against the baseline.

    Args:
        baseline: the dense model's metrics (valid_ppl, params, flops_per_token).
        rows: compression rows (variant, effective_params, valid_ppl, test_ppl, flops...).
    """
    head = (
        "| variant | params | size | valid ppl | Δ% vs dense | test ppl | FLOPs/token (dense exec.) "
        "| FLOPs/token (zeros skipped) | FLOP speed-up |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [
        head,
        f"| dense baseline | {baseline['params']:,} | 100.0 % | {baseline['valid_ppl']:.2f} | — "
        f"| {baseline['test_ppl']:.2f} | {baseline['flops_per_token']:,} "
        f"| {baseline['flops_per_token']:,} | 1.00× |",
    ]
    for r in rows:
        delta = 100 * (r["valid_ppl"] / baseline["valid_ppl"] - 1)
        speedup = baseline["flops_per_token"] / r["sparse_flops_per_token"]
        lines.append(
            f"| {r['variant']} | {r['effective_params']:,} | {_pct(r['size_fraction'])} "
            f"| {r['valid_ppl']:.2f} | {delta:+.1f} | {r['test_ppl']:.2f} "
            f"| {r['flops_per_token']:,} | {r['sparse_flops_per_token']:,} | {speedup:.2f}× |"
        )
    return "\n".join(lines) + "\n"
