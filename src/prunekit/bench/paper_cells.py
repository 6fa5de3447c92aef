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
    incremental-taylor-unstructured-s10-p2000-seed0     budget axis: a 2000-step pruning run
    scratch-s10-plus2000-seed0                 budget axis: from scratch, train.steps + 2000 steps
    oneshot-magnitude-unstructured-s10-p500-seed0       Table 1: one-shot, then 500 training steps

A `-p<N>` / `-plus<N>` part appears only where the steps differ from the grid's default for that
kind of cell (prune.steps, oneshot_steps; train.steps for from scratch), so the budget point at
prune.steps *is* the Tables 1-3 cell, and adding the new axes to a grid never renames a cell.
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
    # prune: optimizer steps of the pruning run; scratch: the pruning steps it is matched to
    # (trains train.steps + steps). None = the grid's default for the kind (see module doc).
    steps: int | None = None
    epochs: int | None = (
        None  # finetune: the epochs the grid asks for (an older run may have fewer)
    )

    def spec(self) -> dict[str, Any]:
        """The JSON-able description written into the cell's result."""
        keys = ("id", "kind", "size", "seed", "schedule", "criterion", "method", "group", "source")
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out["tables"] = list(self.tables)
        if self.steps is not None:  # only the budget cells carry it: older records stay as they are
            out["budget_steps"] = self.steps
        return out


def prune_id(
    schedule: str, criterion: str, method: str, size: float, seed: int, steps: int | None = None
) -> str:
    """Id of a pruning cell, e.g. 'incremental-taylor-unstructured-s10-seed0' (with `steps`:
    'incremental-taylor-unstructured-s10-p2000-seed0')."""
    budget = "" if steps is None else f"-p{steps}"
    return f"{SCHEDULE_TAG[schedule]}-{criterion}-{method}-{size_label(size)}{budget}-seed{seed}"


def scratch_id(size: float, seed: int, steps: int | None = None) -> str:
    """Id of a from-scratch cell, e.g. 'scratch-s10-seed0' (matched to a pruning run of `steps`:
    'scratch-s10-plus2000-seed0')."""
    budget = "" if steps is None else f"-plus{steps}"
    return f"scratch-{size_label(size)}{budget}-seed{seed}"


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

    def prune(
        self,
        table: str,
        schedule: str,
        criterion: str,
        method: str,
        size: float,
        seed: int,
        steps: int | None = None,
    ) -> Cell:
        cid = prune_id(schedule, criterion, method, size, seed, steps)
        cell = Cell(cid, "prune", (table,), size, seed, schedule, criterion, method)
        return self.add(replace(cell, depends=("baseline",), steps=steps))

    def scratch(self, table: str, size: float, seed: int, steps: int | None = None) -> Cell:
        return self.add(
            Cell(scratch_id(size, seed, steps), "scratch", (table,), size, seed, steps=steps)
        )


def _table_cells(plan: _Plan, paper: PaperConfig, size: float, seed: int) -> None:
    """Tables 1-3 at one size and seed."""
    c1 = paper.t1_criterion
    plan.prune("table1", "one-shot", c1, "unstructured", size, seed)
    plan.prune("table1", "incremental", c1, "unstructured", size, seed)
    for crit in [*paper.criteria, *paper.extra_criteria]:
        plan.prune("table2", "incremental", crit, "unstructured", size, seed)
    if paper.scratch:
        plan.scratch("table3", size, seed)
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
                cell = replace(cell, source=src.id, epochs=paper.fig2.total_epochs)
                plan.add(replace(cell, depends=("baseline", src.id)))
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
    _finetuned_oneshot_cells(plan, paper)
    _budget_cells(plan, paper)
    return list(plan.cells.values())


def _seeds_at(size: float, paper: PaperConfig) -> list[int]:
    """Every seed at a seeded size, else the first."""
    return list(paper.seeds) if _is_seeded(size, paper) else paper.seeds[:1]


def _finetuned_oneshot_cells(plan: _Plan, paper: PaperConfig) -> None:
    """Table 1 the paper's way: one-shot, then as many training steps as the incremental run."""
    if not paper.t1_finetuned or paper.oneshot_steps != 0:
        return  # with oneshot_steps > 0 the one-shot column is already trained
    for seed in paper.seeds:
        for size in paper.sizes:
            if seed in _seeds_at(size, paper):
                crit, steps = paper.t1_criterion, paper.prune.steps
                plan.prune("table1", "one-shot", crit, "unstructured", size, seed, steps)


def _budget_cells(plan: _Plan, paper: PaperConfig) -> None:
    """The pruning-budget axis, seed by seed, shortest runs first: per size and budget the
    pruning runs of `budget.methods` and the compute-matched from-scratch model; the budget at
    prune.steps is the Tables 1-3 cell (merged), beside today's from-scratch cell."""
    b = paper.budget
    if not b.enabled:
        return
    crit = b.criterion or paper.t3_criterion
    for seed in paper.seeds:
        for size in b.sizes:
            if seed not in _seeds_at(size, paper):
                continue
            if b.scratch:
                plan.scratch("budget", size, seed)
            for steps in b.steps:
                own = None if steps == paper.prune.steps else steps
                for method in b.methods:
                    plan.prune("budget", "incremental", crit, method, size, seed, own)
                if b.scratch:
                    plan.scratch("budget", size, seed, steps)


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


def recorded_epochs(record: dict[str, Any]) -> float:
    """Fine-tuning epochs a finished Fig. 2 cell ran (older records: steps / epoch_steps)."""
    if record.get("epochs") is not None:
        return float(record["epochs"])
    return record.get("steps", 0) / max(1, record.get("epoch_steps") or 1)


def checkpointed_steps(out: Path, cell_id: str) -> int:
    """Optimizer steps of the cell's newest `last` checkpoint under runs/ (0 when none)."""
    steps = 0
    for state in (out / "runs" / cell_id).glob("**/checkpoints/last/state.json"):
        try:
            steps = max(steps, int(json.loads(state.read_text())["state"]["step"]))
        except (OSError, ValueError, KeyError):
            continue
    return steps


def cell_status(out: Path, cell: Cell) -> tuple[str, int]:
    """('done' | 'extend' | 'partial' | 'todo', optimizer steps already checkpointed).

    'extend': a finished Fig. 2 cell with fewer epochs than the grid now asks for.
    """
    path = out / "cells" / f"{cell.id}.json"
    if path.is_file():
        if cell.kind != "finetune" or cell.epochs is None:
            return "done", 0
        record = json.loads(path.read_text(encoding="utf-8"))
        if recorded_epochs(record) + 1e-9 >= cell.epochs:
            return "done", 0
        return "extend", checkpointed_steps(out, cell.id)
    steps = checkpointed_steps(out, cell.id)
    if steps or (out / "runs" / cell.id).exists():
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
        if cell.steps is not None:
            return cfg.train.steps + cell.steps
        return paper.scratch_steps or cfg.train.steps
    if cell.kind == "finetune":
        return paper.fig2.total_epochs * epoch_steps
    if cell.kind == "layer":
        return paper.fig3.steps or paper.prune.steps
    if cell.steps is not None:
        return cell.steps
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
        evals = paper.fig2.total_epochs * paper.fig2.evals_per_epoch
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
