"""The cells of `prunekit bench am-compress`: ids, dependencies, run folders, status and cost.

    dense-h128                       dense CTC model, 128 wide (Narang's table; q; Pareto point)
    lowrank-tracenorm-rec1e-05-nonrec0   one trace-norm / l2 grid point: stage 1 + stage 2 per
                                     threshold (seed 000); the short variant is its own section
    narang-h256                      Narang's ramp during the first training (q from dense-h256)
    cubic-taylor-h128                the cubic schedule to the sparsity narang-h128 reached
    structured-h128                  gate-aware removal of GRU units, cubic over Narang's window

A cell's run folder is `runs/<id>/` (cubic cells: `runs/narang-h<w>/cubic/<criterion>/`, beside
the Narang run they continue); once finished, `cells/<id>.json` holds its rows.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.bench.am_spec import AmCompressSpec
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.lowrank.config import LowRankSection
from prunekit.models import build_model
from prunekit.train.checkpoint import read_checkpoint_state

EVAL_COST = 1 / 3  # a forward-only frame costs about a third of a training frame


@dataclass(frozen=True)
class AmCell:
    """One unit of work. `point`: the lowrank grid point's name, or the cubic cell's criterion."""

    id: str
    kind: str  # dense | lowrank | narang | cubic | structured
    width: int
    point: str | None = None
    depends: tuple[str, ...] = ()
    section: str = ""  # a lowrank cell's LowRankSection as sorted JSON (what its rows depend on)

    def spec(self) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "width": self.width, "point": self.point,
               "depends": list(self.depends)}  # fmt: skip
        if self.section:
            out["section"] = json.loads(self.section)
        return out


def base_width(spec: AmCompressSpec) -> int:
    """The swept model's width: the recipe's am.model.d_hidden."""
    return int(spec.am.model.get("d_hidden", 256))


def lowrank_points(spec: AmCompressSpec) -> dict[str, LowRankSection]:
    """Every grid point of every `lowrank:` section, by name."""
    return {p.name: p for s in spec.lowrank for p in s.grid()}


def plan_am_cells(spec: AmCompressSpec) -> list[AmCell]:
    """Every cell, in run order: the base width's dense model first (it calibrates the cost
    model), the other dense widths, Narang's runs and their comparisons, then the sweep."""
    b = spec.bench
    base = base_width(spec)
    widths = sorted(set(b.dense_widths), key=lambda w: (w != base, w))
    cells = [AmCell(f"dense-h{w}", "dense", w) for w in widths]
    cells += [
        AmCell(f"narang-h{w}", "narang", w, depends=(f"dense-h{w}",)) for w in b.sparse_widths
    ]
    if b.sparse_widths:
        narang = next(s for s in spec.prune if s.schedule == "narang")
        cw = b.compare_width
        cells += [
            AmCell(f"cubic-{c}-h{cw}", "cubic", cw, c, depends=(f"narang-h{cw}",))
            for c in narang.narang.compare
        ]
    if b.structured is not None:
        cells.append(AmCell(f"structured-h{b.compare_width}", "structured", b.compare_width))
    for name, point in lowrank_points(spec).items():
        settings = json.dumps(point.model_dump(mode="json"), sort_keys=True)
        cells.append(AmCell(f"lowrank-{name}", "lowrank", base, name, section=settings))
    return cells


def select(cells: list[AmCell], globs: str | None) -> list[AmCell]:
    """Cells matching comma-separated `globs` over ids, plus their dependencies (plan order)."""
    if not globs:
        return list(cells)
    pats = [g.strip() for g in globs.split(",") if g.strip()]
    chosen = {c.id for c in cells if any(fnmatch.fnmatch(c.id, p) for p in pats)}
    by_id = {c.id: c for c in cells}
    stack = list(chosen)
    while stack:
        for dep in by_id[stack.pop()].depends:
            if dep not in chosen:
                chosen.add(dep)
                stack.append(dep)
    return [c for c in cells if c.id in chosen]


def run_dir(work: Path, cell: AmCell) -> Path:
    """Where `cell` trains (see the module docstring)."""
    if cell.kind == "cubic":
        return work / "runs" / f"narang-h{cell.width}" / "cubic" / str(cell.point)
    return work / "runs" / cell.id


def cell_json(work: Path, cell: AmCell) -> Path:
    return work / "cells" / f"{cell.id}.json"


def _steps_done(folder: Path) -> int:
    """Optimizer steps of every `checkpoints/last` under `folder` (0 when none)."""
    done = 0
    for last in folder.rglob("checkpoints/last"):
        try:
            done += int(read_checkpoint_state(last)["state"]["step"])
        except (OSError, KeyError, ValueError):
            continue
    return done


def cell_status(work: Path, cell: AmCell) -> tuple[str, int]:
    """("done" | "partial" | "todo", optimizer steps done).

    Raises:
        PrunekitError: a finished lowrank cell was run with other section settings.
    """
    done = cell_json(work, cell)
    if done.is_file():
        if cell.section:
            before = json.loads(done.read_text(encoding="utf-8"))["cell"].get("section")
            if before != json.loads(cell.section):
                raise PrunekitError(
                    f"{done} was run with other lowrank settings than the recipe's: delete it "
                    f"and {run_dir(work, cell)} to rerun it, or pass another --work"
                )
        return "done", -1
    folder = run_dir(work, cell)
    if cell.kind == "narang":
        folder = folder / "narang"
    steps = _steps_done(folder) if folder.is_dir() else 0
    return ("partial" if steps else "todo"), steps


def cell_steps(spec: AmCompressSpec, cell: AmCell) -> int:
    """Optimizer steps `cell` trains in all (stage 1 plus every stage 2 of a lowrank cell)."""
    steps = spec.am.train.steps
    if cell.kind != "lowrank":
        return steps
    p = lowrank_points(spec)[str(cell.point)]
    return (p.stage1_steps or steps) + len(p.thresholds) * p.stage2_steps


def frame_cost(spec: AmCompressSpec, width: int) -> float:
    """FLOPs per output frame of the model `width` wide over those of the swept model."""

    def flops(w: int) -> int:
        model = build_model({**spec.at_width(w).am.model, "n_mels": 80})
        return flops_per_token(model, 1)

    return flops(width) / flops(base_width(spec))


def measured_fps(work: Path, spec: AmCompressSpec) -> float:
    """Training frames per second of the finished base-width dense cell, else the spec's guess."""
    path = work / "cells" / f"dense-h{base_width(spec)}.json"
    if path.is_file():
        fps = json.loads(path.read_text(encoding="utf-8"))["rows"][0].get("train_frames_per_second")
        if fps:
            return float(fps)
    return spec.bench.frames_per_second


def estimate_seconds(
    spec: AmCompressSpec, cell: AmCell, frames_per_step: float, dev_frames: float,
    test_frames: float, fps: float, steps_done: int = 0, cost: float | None = None,
) -> float:  # fmt: skip
    """Seconds `cell` still needs at `fps` training frames per second of the swept width (`cost`:
    its `frame_cost`, computed when None): its training frames, a dev validation every
    eval_every steps, and one greedy evaluation per model it yields."""
    steps = max(0, cell_steps(spec, cell) - max(0, steps_done))
    if steps == 0:
        return 0.0
    models = len(lowrank_points(spec)[str(cell.point)].thresholds) if cell.kind == "lowrank" else 1
    evals = (steps / spec.am.train.eval_every + models) * dev_frames + models * test_frames
    cost = frame_cost(spec, cell.width) if cost is None else cost
    return (steps * frames_per_step + EVAL_COST * evals) * cost / fps
