"""`prunekit bench paper`: seed 004's Tables 1-3, Fig. 2 and Fig. 3 as one resumable grid.

The output folder holds:

    grid.json          the recipe, the grid settings, the cell plan, and one entry per invocation
                       (command, git commit, machine) - so chunks run on different days are traced
    cells/<id>.json    one finished cell (written atomically; a rerun skips it)
    runs/<id>/         the cell's run folder; a killed cell resumes from its checkpoints here
    tables.md, results.json, *.png   written by `prunekit report DIR` (also after every run)

Cells and their ids are described in `prunekit.bench.paper_cells`. A grid grows across sittings:
new axes in the recipe (`paper.budget`, `paper.t1_finetuned`) only add cells, and raising
`paper.fig2.extra_epochs` turns the finished Fig. 2 cells into 'extend' cells that continue from
their checkpoints (when a sitting lost `runs/`, their sources are run again for their checkpoints
only: finished records are never rewritten by that).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prunekit.atomic import pid_alive, write_json
from prunekit.bench.paper_cells import (
    Cell,
    cell_status,
    estimate_seconds,
    plan_cells,
    seconds_per_token,
    select,
    workload,
)
from prunekit.bench.paper_latency import TIMED_KINDS, fill_latency
from prunekit.bench.paper_run import (
    Grid,
    check_cells,
    ensure_baseline,
    final_checkpoint,
    regenerate,
    run_cell,
)
from prunekit.bench.paper_spec import PaperConfig, parse_paper
from prunekit.config import RunConfig
from prunekit.errors import PrunekitError
from prunekit.machine import machine_info

log = logging.getLogger(__name__)


def invocation(command: str) -> dict[str, Any]:
    """The facts recorded with every cell this invocation finishes."""
    machine = machine_info()
    return {
        "command": command,
        "git_commit": machine["git_commit"],
        "machine": machine,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


@contextmanager
def grid_lock(out: Path) -> Iterator[None]:
    """Hold out/.lock while running, so two invocations never write the same cell.

    Raises:
        PrunekitError: another live process holds the lock.
    """
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".lock"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and pid_alive(pid):
            raise PrunekitError(
                f"{out} is being run by process {pid}: wait for it, or remove {lock} if that "
                "process is not a prunekit run"
            )
    lock.write_text(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


_FREE_TRAIN_KEYS = ("threads", "log_every", "eval_batch_size", "checkpoint_every")
_CELL_KEYS = ("prune", "fig2", "fig3", "scratch_steps")  # how a cell runs (not which cells)
_FREE_FIG2_KEYS = ("extra_epochs",)  # how far Fig. 2 runs: a longer run extends a shorter one


def _with_defaults(paper: dict[str, Any]) -> dict[str, Any]:
    """A grid.json `paper` section as this version reads it: keys added since it was written
    take their defaults (which reproduce the older behaviour)."""
    try:
        return parse_paper(paper).model_dump(mode="json")
    except PrunekitError:
        return paper  # a section this version cannot read: compared as it is


def _settings(recipe: dict[str, Any], paper: dict[str, Any]) -> dict[str, Any]:
    """What every finished cell depends on: data, model, training and the cells' own settings."""
    train = {k: v for k, v in recipe.get("train", {}).items() if k not in _FREE_TRAIN_KEYS}
    paper = _with_defaults(paper)
    cells = {k: paper.get(k) for k in _CELL_KEYS}
    if isinstance(cells["fig2"], dict):
        cells["fig2"] = {k: v for k, v in cells["fig2"].items() if k not in _FREE_FIG2_KEYS}
    return {"data": recipe.get("data"), "model": recipe.get("model"), "train": train, **cells}


def check_same_settings(grid: Grid) -> None:
    """Refuse to add cells to a folder made with other data / model / cell settings.

    Raises:
        PrunekitError: naming the first differing section.
    """
    path = grid.out / "grid.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    before = _settings(old.get("recipe", {}), old.get("paper", {}))
    now = _settings(grid.cfg.model_dump(mode="json"), grid.paper.model_dump(mode="json"))
    for key in now:
        if before.get(key) != now[key]:
            hint = " (to run Fig. 2 longer, set paper.fig2.extra_epochs)" if key == "fig2" else ""
            raise PrunekitError(
                f"{grid.out} was run with other `{key}` settings than this recipe, so its finished "
                f"cells would not be comparable: pass another --out (or restore the settings){hint}"
            )


def write_manifest(
    grid: Grid, cells: list[Cell], inv: dict[str, Any], extra: dict | None = None
) -> None:
    """Update grid.json: recipe, grid settings, full plan, and this invocation appended."""
    path = grid.out / "grid.json"
    old: dict[str, Any] = {}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
    runs = [*old.get("invocations", []), {**inv, "cells": [c.id for c in cells], **(extra or {})}]
    write_json(
        path,
        {
            "recipe": grid.cfg.model_dump(mode="json"),
            "paper": grid.paper.model_dump(mode="json"),
            "plan": [c.spec() | {"depends": list(c.depends)} for c in plan_cells(grid.paper)],
            "invocations": runs,
        },
    )


def calibration(grid: Grid) -> float:
    """Measured / modelled training time per token of the finished baseline (1.0 before it)."""
    path = grid.cell_json("baseline")
    if not path.is_file():
        return 1.0
    tps = json.loads(path.read_text(encoding="utf-8")).get("train_tokens_per_second")
    if not tps:
        return 1.0
    return (1.0 / tps) / seconds_per_token(grid.paper, grid.base_params)


def describe(grid: Grid, cells: list[Cell]) -> list[dict[str, Any]]:
    """One row per cell: id, kind, tables, status, steps done / total, estimated seconds left."""
    tokens = {s: int(getattr(grid.data, s).numel()) for s in ("train", "valid", "test")}
    scale = calibration(grid)
    by_id = {c.id: c for c in plan_cells(grid.paper)}

    def cost(cell: Cell, done: int = 0) -> float:
        w = workload(cell, grid.cfg, grid.paper, grid.base_params, tokens)
        return estimate_seconds(w, grid.cfg, grid.paper, done, scale)

    rows = []
    for cell in cells:
        status, done = cell_status(grid.out, cell)
        w = workload(cell, grid.cfg, grid.paper, grid.base_params, tokens)
        left = 0.0
        if status != "done":
            left = cost(cell, done)
            # a source whose checkpoint went with an earlier sitting's runs/ is run again first
            left += sum(cost(by_id[d]) for d in _lost_sources(grid, cell) if d in by_id)
        full = cost(cell)
        rows.append(
            {
                "id": cell.id,
                "kind": cell.kind,
                "tables": list(cell.tables),
                "status": status,
                "steps_done": w.steps if status == "done" else done,
                "steps": w.steps,
                "estimate_seconds": full,
                "seconds_left": left,
                "cost_scale": scale,
            }
        )
    return rows


def format_plan(rows: list[dict[str, Any]], threads: int) -> str:
    """The dry-run listing as plain text, with totals."""
    width = max([len(r["id"]) for r in rows] + [4])
    lines = [f"{'cell':<{width}}  {'status':<7}  {'steps':>11}  {'est. left':>9}  tables"]
    for r in rows:
        steps = f"{r['steps_done']}/{r['steps']}"
        lines.append(
            f"{r['id']:<{width}}  {r['status']:<7}  {steps:>11}  "
            f"{r['seconds_left'] / 60:>7.1f} m  {','.join(r['tables'])}"
        )
    total = sum(r["estimate_seconds"] for r in rows)
    left = sum(r["seconds_left"] for r in rows)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "partial", "todo", "extend")}
    extend = f", {counts['extend']} to extend" if counts["extend"] else ""
    lines.append(
        f"{len(rows)} cells ({counts['done']} done, {counts['partial']} partial, "
        f"{counts['todo']} todo{extend}); estimated {total / 3600:.2f} h for all, "
        f"{left / 3600:.2f} h left, at {threads} thread(s) (cost model: paper.cost"
        + (
            f", x{rows[0]['cost_scale']:.2f} from the finished baseline's speed)"
            if rows and rows[0]["cost_scale"] != 1.0
            else ")"
        )
    )
    return "\n".join([*lines, *_left_by_table(rows)])


def _left_by_table(rows: list[dict[str, Any]]) -> list[str]:
    """'left by table:' lines (a cell feeding several tables counts in each), to plan sittings."""
    left: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] != "done":
            for table in r["tables"] or ["-"]:
                left.setdefault(table, []).append(r["seconds_left"])
    if not left:
        return []
    parts = [f"{t} {len(v)} cells {sum(v) / 3600:.2f} h" for t, v in left.items()]
    return ["left by table (a shared cell counts in each): " + "; ".join(parts)]


def open_grid(
    cfg: RunConfig, paper: PaperConfig, out: Path, command: str = "", progress: bool = False
) -> Grid:
    """A Grid for `out` with this invocation's facts."""
    return Grid(Path(out), cfg, paper, invocation(command), progress=progress)


def run_grid(
    grid: Grid, cells_glob: str | None = None, on_cell: Any = None
) -> dict[str, list[str]]:
    """Run every selected cell not finished yet (dependencies first); skip finished ones.

    Args:
        grid: the grid (see `open_grid`).
        cells_glob: comma-separated globs over cell ids (their dependencies are added).
        on_cell: optional callback(cell, status) called before each cell.

    Returns:
        {"ran": ids run or resumed, "skipped": ids already finished}.

    Raises:
        PrunekitError: bad recipe values, an unreachable size, a locked folder, no cell matched.
    """
    cells = select(plan_cells(grid.paper), cells_glob)
    if not cells:
        raise PrunekitError(f"--cells {cells_glob!r} matches no cell: see the ids with --dry-run")
    check_cells(grid, cells)
    check_same_settings(grid)
    summary: dict[str, list[str]] = {"ran": [], "skipped": []}
    by_id = {c.id: c for c in plan_cells(grid.paper)}
    with grid_lock(grid.out):
        write_manifest(grid, cells, grid.invocation)
        ensure_baseline(grid)
        for cell in cells:
            status, _ = cell_status(grid.out, cell)
            if on_cell is not None:
                on_cell(cell, status)
            if status == "done":
                summary["skipped"].append(cell.id)
                continue
            notes = {}
            for dep in _lost_sources(grid, cell):
                notes.setdefault("regenerated_sources", {})[dep] = _regenerate(grid, by_id[dep])
                summary.setdefault("regenerated", []).append(dep)
            log.info("cell %s (%s)", cell.id, status)
            _run_and_time(grid, cell, notes)
            summary["ran"].append(cell.id)
    return summary


def _lost_sources(grid: Grid, cell: Cell) -> list[str]:
    """Finished cells `cell` continues from whose checkpoints are gone (e.g. a new sitting);
    none for a Fig. 2 cell that resumes from a checkpoint of its own."""
    if cell.kind == "finetune" and (grid.run_dir(cell.id) / "checkpoints" / "last").is_dir():
        return []
    lost = []
    for dep in cell.depends:
        if dep == "baseline" or not grid.cell_json(dep).is_file():
            continue  # ensure_baseline: the portable copy stands in for the baseline
        try:
            final_checkpoint(grid, dep)
        except PrunekitError:
            lost.append(dep)
    return lost


def _regenerate(grid: Grid, dep: Cell) -> dict[str, Any]:
    """Rebuild a finished source's checkpoint without rewriting its record; say how the rerun
    compares with what was recorded."""
    log.info("the checkpoint of %s is gone; running it again (its record is kept)", dep.id)
    got = regenerate(grid, dep)
    recorded = grid.result(dep.id)
    out = {"valid_ppl": got.get("valid_ppl"), "recorded_valid_ppl": recorded.get("valid_ppl")}
    if out["valid_ppl"] != out["recorded_valid_ppl"]:
        log.warning("%s ran again to valid ppl %s (recorded: %s)", dep.id, *out.values())
    return out


def _run_and_time(grid: Grid, cell: Cell, notes: dict[str, Any] | None = None) -> None:
    """Run `cell`; then time its compact model while its checkpoint is surely there."""
    run_cell(grid, cell, notes)
    if grid.paper.latency.each_cell and cell.kind in TIMED_KINDS:
        fill_latency(grid, [cell], remeasure=True)
