"""The cells of the paper grid: stable ids, shared work merged, status and estimated cost.

A cell is one unit of work with a run folder `runs/<id>/` and, once finished, `cells/<id>.json`.
Ids name the computation, not the table, so a run that two tables need is one cell listed in both:
Table 1's incremental magnitude column *is* Table 2's magnitude column, and Table 2's data-driven
column *is* Table 3's unstructured row.

    baseline                                   the dense model every other cell starts from
    oneshot-magnitude-unstructured-s10-seed0   prune (schedule-criterion-method-size-seed)
    scratch-s10-seed0                          Table 3: same shape, narrower, trained from scratch
    finetune-oneshot-magnitude-unstructured-s10-seed0   Fig. 2: further fine-tuning of a cell
    layer-attention-seed0                      Fig. 3: one layer group pruned to 75 %
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prunekit.bench.paper_spec import PaperConfig, size_label
from prunekit.config import RunConfig

KINDS = ("baseline", "prune", "scratch", "finetune", "layer")
SCHEDULE_TAG = {"one-shot": "oneshot", "incremental": "incremental"}


@dataclass(frozen=True)
class Cell:
    """One unit of the grid. `tables` lists where its result appears (table1, fig2, ...)."""

    id: str
    kind: str
    tables: tuple[str, ...] = ()
    size: float | None = None
    seed: int = 0
    schedule: str | None = None
    criterion: str | None = None
    method: str | None = None
    group: str | None = None
    source: str | None = None  # finetune: the prune cell it continues
    depends: tuple[str, ...] = field(default_factory=tuple)

    def spec(self) -> dict[str, Any]:
        """The JSON-able description written into the cell's result."""
        keys = ("id", "kind", "size", "seed", "schedule", "criterion", "method", "group", "source")
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out["tables"] = list(self.tables)
        return out


def prune_id(schedule: str, criterion: str, method: str, size: float, seed: int) -> str:
    """Id of a pruning cell, e.g. 'incremental-taylor-unstructured-s10-seed0'."""
    return f"{SCHEDULE_TAG[schedule]}-{criterion}-{method}-{size_label(size)}-seed{seed}"


def _is_seeded(size: float, paper: PaperConfig) -> bool:
    return any(math.isclose(size, s, rel_tol=1e-9) for s in paper.seeded_sizes)


class _Plan:
    """Ordered cells keyed by id; adding an existing id merges its tables."""

    def __init__(self) -> None:
        self.cells: dict[str, Cell] = {}

    def add(self, cell: Cell) -> Cell:
        old = self.cells.get(cell.id)
        if old is not None:
            tables = tuple(dict.fromkeys(old.tables + cell.tables))
            self.cells[cell.id] = replace(old, tables=tables)
        else:
            self.cells[cell.id] = cell
        return self.cells[cell.id]

    def prune(self, table: str, schedule: str, criterion: str, method: str, size: float, seed: int):
        cid = prune_id(schedule, criterion, method, size, seed)
        cell = Cell(cid, "prune", (table,), size, seed, schedule, criterion, method)
        return self.add(replace(cell, depends=("baseline",)))


def _table_cells(plan: _Plan, paper: PaperConfig, size: float, seed: int) -> None:
    """Tables 1-3 at one size and seed."""
    c1 = paper.t1_criterion
    plan.prune("table1", "one-shot", c1, "unstructured", size, seed)
    plan.prune("table1", "incremental", c1, "unstructured", size, seed)
    for crit in [*paper.criteria, *paper.extra_criteria]:
        plan.prune("table2", "incremental", crit, "unstructured", size, seed)
    if paper.scratch:
        cid = f"scratch-{size_label(size)}-seed{seed}"
        plan.add(Cell(cid, "scratch", ("table3",), size, seed))
    for method in paper.methods:
        plan.prune("table3", "incremental", paper.t3_criterion, method, size, seed)


def plan_cells(paper: PaperConfig) -> list[Cell]:
    """Every cell of the grid, in run order: baseline; per size the seed-0 tables, then Fig. 2's
    fine-tuning of that size's Table 1 cells; Fig. 3; more seeds.

    A Fig. 2 cell runs right after the cell it continues, so the checkpoint it starts from is
    still there when a grid is run across sittings that do not keep `runs/`. Shared runs appear
    once (with every table they feed); only `seeded_sizes` get every seed.
    """
    plan = _Plan()
    plan.add(Cell("baseline", "baseline", ("table1", "table2", "table3"), seed=paper.seeds[0]))
    first, more = paper.seeds[0], paper.seeds[1:]
    for size in paper.sizes:
        _table_cells(plan, paper, size, first)
        if paper.fig2.enabled:
            for schedule in ("one-shot", "incremental"):
                src = plan.prune("fig2", schedule, paper.t1_criterion, "unstructured", size, first)
                cell = replace(src, id="finetune-" + src.id, kind="finetune", tables=("fig2",))
                plan.add(replace(cell, source=src.id, depends=("baseline", src.id)))
    if paper.fig3.enabled:
        for group in paper.fig3.groups:
            cell = Cell(f"layer-{group}-seed{first}", "layer", ("fig3",), seed=first, group=group)
            cell = replace(cell, depends=("baseline",))
            crit = paper.fig3.criterion
            plan.add(replace(cell, schedule="incremental", criterion=crit, method="unstructured"))
    for seed in more:
        for size in paper.sizes:
            if _is_seeded(size, paper):
                _table_cells(plan, paper, size, seed)
    return list(plan.cells.values())


def select(cells: list[Cell], patterns: str | None) -> list[Cell]:
    """The cells matching any comma-separated glob of `patterns`, plus what they depend on."""
    if not patterns:
        return list(cells)
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    by_id = {c.id: c for c in cells}
    wanted: set[str] = set()
    todo = [c.id for c in cells if any(fnmatch.fnmatchcase(c.id, g) for g in globs)]
    while todo:
        cid = todo.pop()
        if cid not in wanted:
            wanted.add(cid)
            todo.extend(by_id[cid].depends)
    return [c for c in cells if c.id in wanted]


# ------------------------------------------------------------------ status and cost


def cell_status(out: Path, cell: Cell) -> tuple[str, int]:
    """('done' | 'partial' | 'todo', optimizer steps already checkpointed)."""
    if (out / "cells" / f"{cell.id}.json").is_file():
        return "done", 0
    run = out / "runs" / cell.id
    steps = 0
    for state in run.glob("**/checkpoints/last/state.json"):
        try:
            steps = max(steps, int(json.loads(state.read_text())["state"]["step"]))
        except (OSError, ValueError, KeyError):
            continue
    if steps or run.exists():
        return "partial", steps
    return "todo", 0


@dataclass(frozen=True)
class Workload:
    """What one cell costs: training steps at a model size, and evaluated tokens."""

    steps: int
    params: int
    factor: float
    eval_tokens: int


def cell_steps(cell: Cell, cfg: RunConfig, paper: PaperConfig, epoch_steps: int) -> int:
    """Optimizer steps the cell's run takes."""
    if cell.kind == "baseline":
        return cfg.train.steps
    if cell.kind == "scratch":
        return paper.scratch_steps or cfg.train.steps
    if cell.kind == "finetune":
        return paper.fig2.epochs * epoch_steps
    if cell.kind == "layer":
        return paper.fig3.steps or paper.prune.steps
    if cell.schedule == "one-shot":
        return paper.oneshot_steps
    return paper.prune.steps


def workload(
    cell: Cell, cfg: RunConfig, paper: PaperConfig, base_params: int, tokens: dict[str, int]
) -> Workload:
    """Steps, model size, slow-down factor and evaluated tokens of `cell`."""
    epoch_steps = paper.fig2.epoch_steps or max(
        1, tokens["train"] // (cfg.train.batch_size * cfg.train.bptt)
    )
    steps = cell_steps(cell, cfg, paper, epoch_steps)
    final = tokens["valid"] * 2 + tokens["test"]  # last validation + valid/test evaluation
    if cell.kind in ("baseline", "scratch"):
        params = base_params if cell.kind == "baseline" else int(base_params * (cell.size or 1))
        evals = steps // cfg.train.eval_every
        return Workload(steps, params, 1.0, final + evals * tokens["valid"])
    factor = paper.cost.prune_factor
    if cell.method == "factorized":
        factor = paper.cost.factorized_factor
    evals = 0
    if cell.kind == "finetune":
        evals = paper.fig2.epochs * paper.fig2.evals_per_epoch
    elif cell.kind == "layer":
        evals = paper.fig3.evals
    return Workload(steps, base_params, factor, final + evals * tokens["valid"])


def seconds_per_token(paper: PaperConfig, params: int) -> float:
    """The cost model's training seconds per token for a dense model of `params` parameters."""
    c = paper.cost
    return (c.ms_per_token + c.ms_per_token_per_mparam * params / 1e6) / 1000


def estimate_seconds(
    w: Workload, cfg: RunConfig, paper: PaperConfig, done_steps: int = 0, scale: float = 1.0
) -> float:
    """Seconds of the cost model for what is left of workload `w` after `done_steps` steps.

    `scale` multiplies the compute part (e.g. measured / modelled speed of the finished baseline).
    """
    c = paper.cost
    sec = seconds_per_token(paper, w.params) * scale
    left = max(0, w.steps - done_steps)
    train = left * cfg.train.batch_size * cfg.train.bptt * sec * w.factor
    return train + w.eval_tokens * sec * c.eval_factor + c.cell_overhead_s
