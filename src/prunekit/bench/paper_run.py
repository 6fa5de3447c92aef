"""Running one cell of the paper grid and writing its JSON.

Every runner resumes: the baseline and from-scratch cells through `train_baseline`, pruning cells
through `compress` (both resume from `checkpoints/last`), the Fig. 2 / Fig. 3 cells through the
same Trainer checkpoints. A cell's JSON is written atomically only when it is finished.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.bench.paper_baseline import PORTABLE_DIR, check_baseline, export_baseline
from prunekit.bench.paper_cells import Cell, cell_steps, checkpointed_steps
from prunekit.bench.paper_spec import PaperConfig
from prunekit.config import PruneSection, RunConfig, TrainConfig, parse_recipe
from prunekit.data import LMBatches
from prunekit.errors import PrunekitError
from prunekit.models.registry import model_config
from prunekit.models.scaling import scaled_config
from prunekit.pipelines.lm_artifact import TOKENIZER_FILE, load_lm_checkpoint
from prunekit.pipelines.lm_baseline import LMData, build_lm, lm_task, prepare_data, train_baseline
from prunekit.pipelines.lm_compress import compress, load_trained, measure, prune_config
from prunekit.prune import (
    Cubic,
    PruneConfig,
    Pruner,
    ScopeConfig,
    calibrate,
    count_params,
    resolve_scope,
)
from prunekit.seeding import seed_everything
from prunekit.train.checkpoint import read_checkpoint_state, restore_interrupted, save_checkpoint
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)

METRIC_KEYS = (
    "valid_ppl",
    "test_ppl",
    "valid_loss",
    "test_loss",
    "valid_word_ppl",
    "test_word_ppl",
    "params",
    "nonzero_params",
    "size_bytes",
    "flops_per_token",
    "sparse_flops_per_token",
    "effective_params",
    "target_params",
    "step",
    "steps",
)


@dataclass
class Grid:
    """Where a grid lives and what it shares: recipe, grid settings, data, invocation facts."""

    out: Path
    cfg: RunConfig
    paper: PaperConfig
    invocation: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    scratch_models: dict[float, dict[str, Any]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # e.g. the dense model latency is timed on

    @cached_property
    def data(self) -> LMData:
        return prepare_data(self.cfg)

    @cached_property
    def base_params(self) -> int:
        """Parameters of the dense baseline (built, not trained)."""
        return count_params(build_lm(self.cfg, self.data.tokenizer.vocab_size))

    @property
    def epoch_steps(self) -> int:
        """Fig. 2's epoch in steps (paper.fig2.epoch_steps, else one pass over the train split)."""
        per_pass = self.data.train.numel() // (self.cfg.train.batch_size * self.cfg.train.bptt)
        return self.paper.fig2.epoch_steps or max(1, per_pass)

    def run_dir(self, cell_id: str) -> Path:
        return self.out / "runs" / cell_id

    def cell_json(self, cell_id: str) -> Path:
        return self.out / "cells" / f"{cell_id}.json"

    def result(self, cell_id: str) -> dict[str, Any]:
        """A finished cell's JSON.

        Raises:
            PrunekitError: the cell has not finished.
        """
        path = self.cell_json(cell_id)
        if not path.is_file():
            raise PrunekitError(
                f"cell {cell_id} has not finished: run it first (--cells {cell_id})"
            )
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def portable_baseline(self) -> Path:
        """The baseline's weights kept with the results (see `paper_baseline`)."""
        return self.out / PORTABLE_DIR

    @property
    def baseline_run_ckpt(self) -> Path:
        """The baseline's best checkpoint in `runs/` (gone in a sitting that lacks `runs/`)."""
        return self.run_dir("baseline") / "checkpoints" / "best"

    @property
    def baseline_ckpt(self) -> Path:
        """The baseline's best checkpoint in `runs/`, else its portable copy."""
        run = self.baseline_run_ckpt
        return (
            run if run.is_dir() or not self.portable_baseline.is_dir() else self.portable_baseline
        )

    def train_cfg(self, seed: int, **update: Any) -> TrainConfig:
        """The recipe's train section with this cell's seed, periodic checkpoints and `update`."""
        base = {"seed": seed, "checkpoint_every": self.paper.checkpoint_every}
        return self.cfg.train.model_copy(update={**base, **update})

    def seeded(self, seed: int) -> RunConfig:
        """The recipe with the cell's seed and periodic checkpoints."""
        return self.cfg.model_copy(update={"train": self.train_cfg(seed)})


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in METRIC_KEYS if k in row}


def _ppl_curve(valid: list[Any], start: float, scale: float = 1.0) -> list[list[float]]:
    """[[x, valid ppl], ...] from Trainer (step, loss) pairs, with `start` at x = 0."""
    return [[0.0, start]] + [[step / scale, math.exp(min(loss, 50))] for step, loss in valid]


# ------------------------------------------------------------------ runners


def _baseline(grid: Grid, cell: Cell) -> dict[str, Any]:
    cfg = grid.seeded(grid.cfg.train.seed)
    m = train_baseline(cfg, grid.run_dir(cell.id), progress=grid.progress)
    keep = ("train_tokens_per_second", "tokens_seen", "train_seconds", "vocab_size", "history")
    extra = {k: m[k] for k in (*keep, "corpus_tokens", "corpus_words") if k in m}
    return {
        **_metrics(m),
        **extra,
        **export_baseline(grid.baseline_run_ckpt, grid.portable_baseline, grid.data.tokenizer),
        "seed": cfg.train.seed,
        "effective_params": m["params"],
        "sparse_flops_per_token": m["flops_per_token"],
        "model": m["recipe"]["model"],
    }


def prune_section(grid: Grid, cell: Cell) -> PruneSection:
    """The `prune` recipe section of a pruning cell (one size)."""
    p = grid.paper.prune
    return PruneSection(
        name=cell.id,
        criterion=cell.criterion,
        method=cell.method,
        schedule=cell.schedule,
        sizes=[cell.size],
        steps=cell.steps or p.steps,
        ramp=p.ramp,
        frequency=p.frequency,
        lr=p.lr,
        calibration_batches=p.calibration_batches,
        scope=p.scope,
        budget=p.budget,
    )


def _training_free(grid: Grid, cell: Cell, section: PruneSection) -> dict[str, Any]:
    """One-shot pruning without fine-tuning; keeps a checkpoint for Fig. 2 to continue from."""
    out = grid.run_dir(cell.id)
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))["rows"][-1]
    model = load_trained(grid.baseline_ckpt)
    target = int((cell.size or 1.0) * grid.base_params)
    pcfg = prune_config(section, model, target, 1)
    pruner = Pruner(model, pcfg).attach()
    if pruner.criterion.needs_grad or pruner.criterion.needs_inputs:
        batches = LMBatches(grid.data.train, grid.cfg.train.batch_size, grid.cfg.train.bptt)
        n = min(section.calibration_batches, len(batches))
        calibrate(pruner, (batches.window(i) for i in range(n)))
    pruner.prune_now(pcfg.schedule.sparsity)  # type: ignore[union-attr]
    pruner.remove_hooks()
    row = {"target_params": target, "step": 0, **measure(model, grid.data, grid.cfg)}
    run = {"recipe": grid.cfg.model_dump(mode="json"), "prune": pcfg.to_dict()}
    state = {"model_config": model_config(model), "step": 0, "run": run}
    tokenizer = {TOKENIZER_FILE: grid.data.tokenizer.to_bytes()}
    save_checkpoint(out / "checkpoints" / "last", model, state, files=tokenizer)
    write_json(done, {"rows": [row], "prune_config": pcfg.to_dict()})
    return row


def _prune(grid: Grid, cell: Cell) -> dict[str, Any]:
    section = prune_section(grid, cell)
    if cell.schedule == "one-shot" and cell.steps is None:
        if grid.paper.oneshot_steps == 0:
            return _metrics(_training_free(grid, cell, section))
        section = section.model_copy(update={"steps": grid.paper.oneshot_steps})
    rows = compress(
        grid.seeded(cell.seed), section, grid.baseline_ckpt, grid.data, grid.run_dir(cell.id)
    )
    return _metrics(rows[-1])


def scratch_model(grid: Grid, size: float) -> dict[str, Any]:
    """Model config of the from-scratch baseline at `size` of the dense parameters."""
    if size not in grid.scratch_models:
        full = {**grid.cfg.model, "vocab_size": grid.data.tokenizer.vocab_size}
        grid.scratch_models[size] = scaled_config(full, int(size * grid.base_params))
    return dict(grid.scratch_models[size])


def _scratch(grid: Grid, cell: Cell) -> dict[str, Any]:
    raw = grid.cfg.model_dump(mode="json")
    raw["name"], raw["model"] = cell.id, scratch_model(grid, cell.size or 1.0)
    steps = cell_steps(cell, grid.cfg, grid.paper, grid.epoch_steps)
    raw["train"] = grid.train_cfg(cell.seed, steps=steps).model_dump(mode="json")
    m = train_baseline(parse_recipe(raw), grid.run_dir(cell.id), progress=grid.progress)
    out = {**_metrics(m), "effective_params": m["params"], "model": raw["model"]}
    out["sparse_flops_per_token"] = m["flops_per_token"]
    out["target_params"] = int((cell.size or 1.0) * grid.base_params)
    return out


def final_checkpoint(grid: Grid, cell_id: str) -> Path:
    """The last checkpoint of a finished pruning cell (one-shot runs live in size-N/).

    Raises:
        PrunekitError: the cell left no finished run.
    """
    for result in sorted(grid.run_dir(cell_id).glob("**/result.json")):
        last = result.parent / "checkpoints" / "last"
        if last.is_dir():
            return last
    raise PrunekitError(f"cell {cell_id} has no finished run under {grid.run_dir(cell_id)}")


def load_pruned(checkpoint: Path) -> nn.Module:
    """Rebuild a pruned model (masks / factorized layers as in training) from its checkpoint."""
    return load_lm_checkpoint(checkpoint)


def _fit(
    grid: Grid, model: nn.Module, tcfg: TrainConfig, out: Path, pruner: Pruner | None, run: dict
) -> Trainer:
    """Train `model` (optionally with `pruner` as callback), resuming from out/checkpoints/last."""
    trainer = Trainer(
        model,
        lm_task(grid.data, grid.cfg),
        tcfg,
        out,
        callbacks=[pruner] if pruner else [],
        run_state={"recipe": grid.cfg.model_dump(mode="json"), **run},
        progress=grid.progress,
        files={TOKENIZER_FILE: grid.data.tokenizer.to_bytes()},
        label=out.name,
    )
    if pruner is not None:
        pruner.add_optimizer(trainer.optimizer)
    last = out / "checkpoints" / "last"
    if restore_interrupted(last):
        trainer.resume(last)
    trainer.fit()
    return trainer


def fig2_phases(grid: Grid, seed: int) -> list[TrainConfig]:
    """Fig. 2's fine-tuning as Trainer configs run one after the other on the same checkpoints:
    cosine decay over `fig2.epochs`, then (with `extra_epochs`) a constant learning rate up to
    `fig2.total_epochs`. A run extended later resumes into the second phase exactly where a
    longer run from the start would be."""
    fig2, epoch = grid.paper.fig2, grid.epoch_steps
    lr = fig2.lr or grid.paper.prune.lr
    cosine = grid.train_cfg(
        seed,
        steps=fig2.epochs * epoch,
        lr=lr,
        warmup_steps=0,
        eval_every=max(1, epoch // fig2.evals_per_epoch),
    )
    if not fig2.extra_epochs:
        return [cosine]
    hold_lr = fig2.extra_lr or lr * cosine.min_lr_ratio
    update = {"steps": fig2.total_epochs * epoch, "decay": "constant", "lr": hold_lr}
    return [cosine, cosine.model_copy(update=update)]


def _finetune(grid: Grid, cell: Cell) -> dict[str, Any]:
    src = grid.result(cell.source or "")
    out_dir = grid.run_dir(cell.id)
    last = out_dir / "checkpoints" / "last"  # an unfinished or shorter run of this cell
    start = last if last.is_dir() else final_checkpoint(grid, cell.source or "")
    model = load_pruned(start)
    run = {"prune": read_checkpoint_state(start)["state"]["run"].get("prune")}
    phases = fig2_phases(grid, cell.seed)
    for tcfg in phases:
        trainer = _fit(grid, model, tcfg, out_dir, None, run)
    row = measure(model, grid.data, grid.seeded(cell.seed))
    epoch = grid.epoch_steps
    curve = _ppl_curve(trainer.history.valid, src["valid_ppl"], scale=epoch)
    out = {**_metrics(row), "steps": trainer.step, "epoch_steps": epoch, "curve": curve}
    out.update(target_params=src.get("target_params"), curve_x="epoch", epochs=trainer.step / epoch)
    out["lr_phases"] = [
        {"until_epoch": t.steps / epoch, "lr": t.lr, "decay": t.decay} for t in phases
    ]
    return out


def layer_config(grid: Grid, cell: Cell, steps: int) -> PruneConfig:
    """Fig. 3: incremental unstructured pruning of one layer group to paper.fig3.sparsity."""
    p, f3 = grid.paper.prune, grid.paper.fig3
    n = max(1, round(p.ramp * steps / p.frequency))
    return PruneConfig(
        criterion=cell.criterion or "magnitude",
        method="unstructured",
        schedule=Cubic(s_i=0.0, s_f=f3.sparsity, t0=0, dt=p.frequency, n=n),
        scope=ScopeConfig(include=tuple(f3.groups[cell.group or ""])),
        budget="layer",
    )


def _layer(grid: Grid, cell: Cell) -> dict[str, Any]:
    base = grid.result("baseline")
    model = load_trained(grid.baseline_ckpt)
    steps = grid.paper.fig3.steps or grid.paper.prune.steps
    pcfg = layer_config(grid, cell, steps)
    pruner = Pruner(model, pcfg).attach()
    evals = max(1, steps // grid.paper.fig3.evals)
    tcfg = grid.train_cfg(
        cell.seed,
        steps=steps,
        lr=grid.paper.prune.lr,
        warmup_steps=min(grid.cfg.train.warmup_steps, steps // 10),
        eval_every=evals,
    )
    trainer = _fit(grid, model, tcfg, grid.run_dir(cell.id), pruner, {"prune": pcfg.to_dict()})
    row = measure(model, grid.data, grid.seeded(cell.seed))
    report = pruner.report()
    kept, dense = sum(r["kept"] for r in report), sum(r["dense"] for r in report)
    out = {**_metrics(row), "steps": trainer.step, "curve_x": "step"}
    out["curve"] = _ppl_curve(trainer.history.valid, base["valid_ppl"])
    out.update(group_params=dense, group_sparsity=1 - kept / dense, group_tensors=len(report))
    return out


RUNNERS = {
    "baseline": _baseline,
    "prune": _prune,
    "scratch": _scratch,
    "finetune": _finetune,
    "layer": _layer,
}


def cell_settings(grid: Grid, cell: Cell) -> dict[str, Any]:
    """The settings a cell ran with (kept in its JSON, so results are self-describing)."""
    paper = grid.paper.model_dump(mode="json")
    out: dict[str, Any] = {"data": grid.cfg.data.model_dump(mode="json")}
    if cell.kind in ("baseline", "scratch"):
        out["train_steps"] = cell_steps(cell, grid.cfg, grid.paper, 1)
    else:
        out["prune"] = paper["prune"]
        if cell.kind == "prune" and cell.steps is not None:
            out["prune"] = {**out["prune"], "steps": cell.steps}
    if cell.kind == "finetune":
        out["fig2"] = {**paper["fig2"], "epoch_steps": grid.epoch_steps}
    if cell.kind == "layer":
        out["fig3"] = paper["fig3"]
    return out


def run_cell(grid: Grid, cell: Cell, notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) `cell`, write `cells/<id>.json` atomically and return its record.

    The record's `cpu_seconds_last_call` covers this call only; `resumed_from_step` says how many
    steps an earlier call had checkpointed (0: the whole run is in this call). `notes` are added.
    """
    torch.set_num_threads(grid.cfg.train.threads)
    seed_everything(cell.seed)  # dropout; the data order follows train.seed
    resumed = checkpointed_steps(grid.out, cell.id)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = RUNNERS[cell.kind](grid, cell)
    record: dict[str, Any] = {**cell.spec(), **result, "settings": cell_settings(grid, cell)}
    record.update(notes or {}, resumed_from_step=resumed)
    if cell.kind != "baseline":
        base = grid.result("baseline")
        record["baseline_params"] = base["params"]
        record["size_fraction"] = record["effective_params"] / base["params"]
        record["flop_speedup"] = base["flops_per_token"] / record["sparse_flops_per_token"]
    record.update(
        wall_seconds_last_call=time.perf_counter() - started,
        cpu_seconds_last_call=time.process_time() - cpu_started,  # all threads; immune to pauses
        finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        threads=grid.cfg.train.threads,
        **grid.invocation,
    )
    write_json(grid.cell_json(cell.id), record)
    return record


def regenerate(grid: Grid, cell: Cell) -> dict[str, Any]:
    """Run a finished cell again only for its checkpoints (gone with an earlier sitting's runs/),
    leaving its record alone; return the metrics this run gave (to compare with the record)."""
    torch.set_num_threads(grid.cfg.train.threads)
    torch.manual_seed(cell.seed)
    return RUNNERS[cell.kind](grid, cell)


def ensure_baseline(grid: Grid) -> None:
    """Make sure a finished baseline has weights to prune from: its `runs/` checkpoint (then its
    portable copy is written if missing), else the portable copy, checked against its record.

    Raises:
        PrunekitError: no weights at all, or a copy that is not the recorded baseline.
    """
    if not grid.cell_json("baseline").is_file():
        return
    record = grid.result("baseline")
    run = grid.baseline_run_ckpt
    if run.is_dir():
        if not grid.portable_baseline.is_dir():
            record.update(export_baseline(run, grid.portable_baseline, grid.data.tokenizer))
            write_json(grid.cell_json("baseline"), record)
        return
    if not grid.portable_baseline.is_dir():
        raise PrunekitError(
            f"{grid.out} has a finished baseline but no weights ({run} and "
            f"{grid.portable_baseline} are missing): restore {grid.portable_baseline} from git, "
            f"or delete {grid.cell_json('baseline')} to train it again"
        )
    check_baseline(grid.portable_baseline, grid.data.tokenizer, record)


def check_cells(grid: Grid, cells: list[Cell]) -> None:
    """Validate every cell against the dense model (sizes reachable, scopes) before training.

    Raises:
        PrunekitError: the first problem, naming the cell.
    """
    model = build_lm(grid.cfg, grid.data.tokenizer.vocab_size)
    for cell in cells:
        try:
            if cell.kind == "prune":
                section = prune_section(grid, cell)
                size = int((cell.size or 1) * grid.base_params)
                prune_config(section, model, size, section.steps)
            elif cell.kind == "layer":
                if cell.group not in grid.paper.fig3.groups:
                    raise PrunekitError(f"paper.fig3.groups has no group {cell.group!r}")
                resolve_scope(model, layer_config(grid, cell, grid.paper.prune.steps).scope)
            elif cell.kind == "scratch":
                scratch_model(grid, cell.size or 1.0)
        except PrunekitError as exc:
            raise PrunekitError(f"cell {cell.id}: {exc}") from None
