"""Markdown tables of compression results, built from the saved rows alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    return "—" if value is None else fmt.format(value)


def compression_table(baseline: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """One line per (variant, size): the size it targets and has, the step it got there and its
    fine-tuning after, perplexity and its change, FLOPs against the baseline and, when measured,
    the deployed (compact) bytes and the measured batch-1 decode speed-up.

    Args:
        baseline: the dense model's metrics (valid_ppl, test_ppl, params, flops_per_token).
        rows: compression rows (variant, target_params, effective_params, pruned_at_step,
            finetune_steps, valid_ppl, test_ppl, flops..., compact_size_bytes, decode_speedup).
    """
    speed = any("decode_speedup" in r for r in rows)
    head = [
        "variant", "target", "params", "size", "reached at step", "fine-tune steps", "valid ppl",
        "Δ% vs dense", "test ppl", "FLOPs/token (zeros skipped)", "FLOP speed-up",
    ]  # fmt: skip
    if speed:
        head += ["compact bytes", "decode ms/token", "measured speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    dense = [
        "dense baseline", "—", f"{baseline['params']:,}", "100.0 %", "—", "—",
        f"{baseline['valid_ppl']:.2f}", "—", f"{baseline['test_ppl']:.2f}",
        f"{baseline['flops_per_token']:,}", "1.00×",
    ]  # fmt: skip
    if speed:
        d = baseline.get("speed") or {}
        dense += [_cell(d, "compact_size_bytes", "{:,}"), _cell(d, "decode_ms_per_token", "{:.3f}")]
        dense.append("1.00×")
    lines.append("| " + " | ".join(dense) + " |")
    for r in rows:
        delta = 100 * (r["valid_ppl"] / baseline["valid_ppl"] - 1)
        size = _pct(r["effective_params"] / baseline["params"])
        if not r.get("on_target", True):
            size += " (off target)"
        cells = [
            r["variant"], _cell(r, "target_params", "{:,}"), f"{r['effective_params']:,}", size,
            _cell(r, "pruned_at_step", "{:,}"), _cell(r, "finetune_steps", "{:,}"),
            f"{r['valid_ppl']:.2f}", f"{delta:+.1f}", f"{r['test_ppl']:.2f}",
            f"{r['sparse_flops_per_token']:,}",
            f"{baseline['flops_per_token'] / r['sparse_flops_per_token']:.2f}×",
        ]  # fmt: skip
        if speed:
            cells += [
                _cell(r, "compact_size_bytes", "{:,}"), _cell(r, "decode_ms_per_token", "{:.3f}"),
                _cell(r, "decode_speedup", "{:.2f}×"),
            ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def export_table(rows: list[dict[str, Any]], out: str | Path) -> str:
    """Where each compressed model's checkpoint is, and the command that writes its compact
    export (to `out`/export/<variant>-<target>; paths as the run recorded them)."""
    lines = ["| variant | params | checkpoint | export command |", "|---|---|---|---|"]
    for r in rows:
        dest = Path(out) / "export" / f"{r['variant']}-{r['target_params']}"
        cmd = f"prunekit export {r['checkpoint']} --out {dest}"
        lines.append(
            f"| {r['variant']} | {r['effective_params']:,} | `{r['checkpoint']}` | `{cmd}` |"
        )
    return "\n".join(lines) + "\n"
