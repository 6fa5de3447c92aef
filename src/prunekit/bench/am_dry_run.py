"""`prunekit bench am-compress --dry-run`: every cell's status and estimated cost, with totals."""

from __future__ import annotations

from typing import Any

from prunekit.asr.batches import frame_batches
from prunekit.bench.am_cells import (
    cell_status,
    cell_steps,
    estimate_seconds,
    frame_cost,
    measured_fps,
    plan_am_cells,
    select,
)
from prunekit.bench.am_compress import AmGrid


def describe(grid: AmGrid, globs: str | None = None) -> list[dict[str, Any]]:
    """One row per selected cell: id, kind, status, steps done / total, estimated seconds (all
    and left) at the measured (or assumed) training speed of one 1-thread process."""
    spec, feats = grid.spec, grid.feats
    lengths = feats["train"].lengths
    batches = frame_batches(lengths, spec.am.max_frames, spec.am.min_batch)
    per_step = float(lengths.sum()) / len(batches)
    dev = float(feats["dev"].lengths.sum())
    test = float(sum(feats[s].lengths.sum() for s in spec.bench.eval_splits))
    fps = measured_fps(grid.work, spec)
    cells = select(plan_am_cells(spec), globs)
    costs = {w: frame_cost(spec, w) for w in {c.width for c in cells}}
    rows = []
    for cell in cells:
        status, done = cell_status(grid.work, cell)
        args = (spec, cell, per_step, dev, test, fps)
        full = estimate_seconds(*args, cost=costs[cell.width])
        left = 0.0 if status == "done" else estimate_seconds(*args, done, costs[cell.width])
        rows.append({"id": cell.id, "kind": cell.kind, "status": status,
                     "steps_done": cell_steps(spec, cell) if status == "done" else done,
                     "steps": cell_steps(spec, cell), "estimate_seconds": full,
                     "seconds_left": left, "frames_per_second": fps})  # fmt: skip
    return rows


def format_plan(rows: list[dict[str, Any]], processes: int = 2) -> str:
    """The dry-run listing as plain text, with totals for one and for `processes` processes."""
    width = max([len(r["id"]) for r in rows] + [4])
    lines = [f"{'cell':<{width}}  {'status':<7}  {'steps':>11}  {'est. left':>9}"]
    for r in rows:
        steps = f"{r['steps_done']}/{r['steps']}"
        lines.append(f"{r['id']:<{width}}  {r['status']:<7}  {steps:>11}  "
                     f"{r['seconds_left'] / 60:>7.1f} m")  # fmt: skip
    total = sum(r["estimate_seconds"] for r in rows)
    left = sum(r["seconds_left"] for r in rows)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "partial", "todo")}
    fps = rows[0]["frames_per_second"] if rows else 0.0
    lines.append(
        f"{len(rows)} cells ({counts['done']} done, {counts['partial']} partial, {counts['todo']} "
        f"todo); estimated {total / 3600:.2f} h for all, {left / 3600:.2f} h left in one 1-thread "
        f"process (~{left / 3600 / processes:.2f} h with {processes} processes), at "
        f"{fps:,.0f} training frames/s of the base width"
    )
    return "\n".join(lines)
