"""`prunekit bench paper --latency`: batch-1 decoding speed of each finished compact model.

Fills `decode_ms_per_token` and `speedup_vs_dense` into the finished cells' JSON (the dense
baseline is timed in the same invocation, so the ratio is like for like). Every model decodes the
way it would be deployed: `prunekit.export.compact.compact` (smaller layers, low rank, CSR where
measured faster; the fastest dense layout for never-pruned models), then
`prunekit.runtime.fast_decoder`. The backend used is recorded with every number.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.bench.paper_cells import Cell, cell_status
from prunekit.bench.paper_run import Grid, final_checkpoint, load_pruned
from prunekit.pipelines.lm_compress import load_trained
from prunekit.pipelines.lm_speed import deploy

log = logging.getLogger(__name__)
TIMED_KINDS = ("baseline", "prune", "scratch", "finetune")


def compact(model: nn.Module, threads: int) -> tuple[nn.Module, str]:
    """The deployed inference model and the backend's name (`pipelines.lm_speed.deploy`):
    `export.compact` (or, for a never-pruned model, `export.fastest_dense`) run by
    `runtime.fast_decoder`."""
    decoder, _, backend = deploy(model, threads=threads)
    return decoder, backend


def _load(grid: Grid, cell: Cell) -> nn.Module:
    if cell.kind == "baseline":
        return load_trained(grid.baseline_ckpt)
    if cell.kind == "scratch":
        return load_trained(grid.run_dir(cell.id) / "checkpoints" / "best")
    if cell.kind == "finetune":
        return load_pruned(grid.run_dir(cell.id) / "checkpoints" / "last")
    return load_pruned(final_checkpoint(grid, cell.id))


def _time(grid: Grid, cell: Cell, dense: nn.Module) -> dict[str, Any]:
    """Decode latency of `cell`'s deployed model and of `dense`, interleaved in one run."""
    from prunekit.bench.latency import compare_variants

    lat = grid.paper.latency
    if cell.kind == "baseline":  # the baseline against itself: exactly 1x
        variants, backend = {"dense": dense, "cell": dense}, "the dense baseline"
    else:
        model, backend = compact(_load(grid, cell), lat.threads)
        variants = {"dense": dense, "cell": model}
    res = compare_variants(
        variants, baseline="dense", threads=[lat.threads],
        context=lat.context, steps=lat.steps, repeats=lat.repeats,
    )  # fmt: skip
    row = res["by_threads"][str(lat.threads)]
    if cell.kind == "baseline":
        row = {"dense": row["dense"], "cell": row["dense"]}
    keep = ("median_ms", "p10_ms", "p90_ms")
    return {
        **{k: row["cell"][k] for k in keep}, "dense_median_ms": row["dense"]["median_ms"],
        "speedup": row["cell"]["speedup"], "context": lat.context, "steps": lat.steps,
        "repeats": lat.repeats, "threads": lat.threads, "backend": backend,
    }  # fmt: skip


def fill_latency(grid: Grid, cells: list[Cell], *, remeasure: bool = False) -> list[str]:
    """Time every finished cell of `cells` lacking a latency (all with `remeasure`), each
    interleaved with the dense baseline so its speed-up is a ratio from one run.

    Returns:
        The ids whose JSON was updated.
    """
    torch.manual_seed(0)
    todo = [c for c in cells if c.kind in TIMED_KINDS and cell_status(grid.out, c)[0] == "done"]
    todo = [c for c in todo if remeasure or "decode_ms_per_token" not in grid.result(c.id)]
    if not todo:
        return []
    if "latency_dense" not in grid.cache:  # built once per invocation (its layout is timed)
        base = _load(grid, Cell("baseline", "baseline"))
        grid.cache["latency_dense"] = compact(base, grid.paper.latency.threads)[0]
    dense = grid.cache["latency_dense"]
    updated = []
    for cell in todo:
        lat = _time(grid, cell, dense)
        path: Path = grid.cell_json(cell.id)
        record = json.loads(path.read_text(encoding="utf-8"))
        record["decode_ms_per_token"] = lat["median_ms"]
        record["speedup_vs_dense"] = lat["speedup"]
        record["latency"] = {**lat, **grid.invocation}
        write_json(path, record)
        updated.append(cell.id)
        log.info("%s: %.3f ms/token, %.2fx (%s)", cell.id, lat["median_ms"], lat["speedup"],
                 lat["backend"])  # fmt: skip
    return updated
