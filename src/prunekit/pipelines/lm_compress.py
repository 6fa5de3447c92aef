"""Compress a trained baseline as a recipe's `prune` sections say, and measure every result.

Incremental sections run once: the cubic schedule (eq. 4) goes to the smallest size, and a
checkpoint + evaluation is taken as the model passes each larger size. One-shot sections run once
per size: prune at step 0, then fine-tune. Every run starts from the recipe's seed, checkpoints
every `train.checkpoint_every` steps (default: a tenth of the section) and resumes from its last
checkpoint. Under `torchrun` every rank trains and evaluates its share; rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.config import PruneSection, RunConfig
from prunekit.errors import PrunekitError
from prunekit.eval.flops import sparse_flops_per_token
from prunekit.models import build_model
from prunekit.pipelines.lm_baseline import LMData, evaluate, lm_task
from prunekit.prune import Cubic, OneShot, PruneConfig, Pruner, ScopeConfig, calibrate
from prunekit.prune.size import count_params, sparsity_for_size
from prunekit.seeding import same_rng_state, seed_everything
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state, restore_interrupted
from prunekit.train.distributed import World
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)


def load_trained(checkpoint: Path) -> nn.Module:
    """Rebuild a model from a checkpoint's config and load its weights."""
    state = read_checkpoint_state(checkpoint)["state"]
    model = build_model(state["model_config"])
    load_checkpoint(checkpoint, model)
    return model


def target_sizes(section: PruneSection, baseline_params: int) -> list[int]:
    """The section's sizes as parameter counts, largest first."""
    sizes = {int(f * baseline_params) if f <= 1 else int(f) for f in section.sizes}
    return sorted(sizes, reverse=True)


def prune_config(section: PruneSection, model: nn.Module, target: int, steps: int) -> PruneConfig:
    """The PruneConfig that takes the dense `model` to `target` parameters (validates everything)."""
    known = [f.name for f in dataclasses.fields(ScopeConfig)]
    unknown = [k for k in section.scope if k not in known]
    if unknown:
        raise PrunekitError(
            f"prune section {section.name!r}: scope key {unknown[0]!r} is not known: use "
            f"{', '.join(known)}"
        )
    scope = ScopeConfig(**section.scope)
    s = sparsity_for_size(
        model,
        target,
        scope,
        method=section.method,
        method_args=section.method_args,
        budget=section.budget,
    )
    if section.schedule == "one-shot":
        schedule = OneShot(sparsity=s, step=0)
    else:
        n = max(1, round(section.ramp * steps / section.frequency))
        schedule = Cubic(s_i=0.0, s_f=s, t0=0, dt=section.frequency, n=n)
    return PruneConfig(
        criterion=section.criterion,
        method=section.method,
        method_args=section.method_args,
        schedule=schedule,
        scope=scope,
        budget=section.budget,
    )


def measure(
    model: nn.Module, data: LMData, cfg: RunConfig, *, world: World = World()
) -> dict[str, Any]:
    """`experiment.evaluate` plus the effective size and the zero-skipping FLOPs."""
    out = evaluate(model, data, cfg, world=world)
    out["effective_params"] = count_params(model)
    out["sparse_flops_per_token"] = sparse_flops_per_token(model, (cfg.train.bptt + 1) // 2)
    return out


class SizeMilestones:
    """Trainer callback: checkpoint and evaluate the model when it first gets <= each size.

    Sizes only change on pruning steps, so the (whole-model) count runs only after those.
    """

    def __init__(
        self,
        sizes: list[int],
        schedule: Any,
        data: LMData,
        cfg: RunConfig,
        out: Path,
        world: World = World(),
    ):
        self.pending = sorted(sizes, reverse=True)
        self.rows: list[dict[str, Any]] = []
        self.schedule, self.data, self.cfg, self.out = schedule, data, cfg, out
        self.world = world

    def after_step(self, trainer: Trainer, step: int) -> None:
        if not self.pending or not self.schedule.should_update(step - 1):
            return  # `step` optimizer steps are done; the pruner updated after step index step-1
        params = count_params(trainer.model)
        passed = [s for s in self.pending if params <= s]
        if not passed:
            return
        row = measure(trainer.model, self.data, self.cfg, world=self.world)
        for size in passed:
            self.pending.remove(size)
            if self.world.is_main:
                trainer.save(self.out / f"size-{size}")
            self.rows.append({"target_params": size, "step": step, **row})
            log.info("reached %d params at step %d: valid ppl %.2f", size, step, row["valid_ppl"])

    def state_dict(self) -> dict[str, Any]:
        return {"meta": {"pending": self.pending, "rows": self.rows}, "tensors": {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pending, rows = state["meta"]["pending"], state["meta"]["rows"]
        if not all(isinstance(s, int) for s in pending) or not all(
            isinstance(r, dict) for r in rows
        ):
            raise TypeError("size milestones state is not lists of sizes and rows")
        self.pending, self.rows = list(pending), list(rows)


def _train_cfg(cfg: RunConfig, section: PruneSection):
    return cfg.train.model_copy(
        update={
            "steps": section.steps,
            "lr": section.lr,
            "warmup_steps": min(cfg.train.warmup_steps, section.steps // 10),
            "eval_every": section.steps,
            "checkpoint_every": cfg.train.checkpoint_every or max(1, section.steps // 10),
        }
    )


def _run_one(
    cfg: RunConfig,
    section: PruneSection,
    baseline: Path,
    data: LMData,
    out: Path,
    sizes: list[int],
    world: World,
) -> list[dict[str, Any]]:
    """One pruning run to min(sizes) (checkpointing at the others); returns a row per size."""
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())["rows"]
    model = load_trained(baseline)
    pcfg = prune_config(section, model, min(sizes), section.steps)
    pruner = Pruner(model, pcfg).attach()
    task = lm_task(data, cfg)
    batches = task.train
    resuming = restore_interrupted(out / "checkpoints" / "last")
    incremental = section.schedule == "incremental"
    if not incremental and not resuming:
        if pruner.criterion.needs_grad or pruner.criterion.needs_inputs:
            n = min(section.calibration_batches, len(batches))
            calibrate(pruner, (batches.window(i) for i in range(n)))
        pruner.prune_now(pcfg.schedule.sparsity)  # type: ignore[union-attr]
    larger = [s for s in sizes if s != min(sizes)]
    milestones = SizeMilestones(larger, pcfg.schedule, data, cfg, out, world)
    callbacks: list[Any] = [pruner, milestones] if incremental else []
    trainer = Trainer(
        model,
        task,
        _train_cfg(cfg, section),
        out,
        world=world,
        callbacks=callbacks,
        run_state={"recipe": cfg.model_dump(mode="json"), "prune": pcfg.to_dict()},
        label=f"prune {section.name}",
    )
    if incremental:
        pruner.add_optimizer(trainer.optimizer)
    if resuming:
        trainer.resume(out / "checkpoints" / "last")
    trainer.fit()
    row = measure(model, data, cfg, world=world)
    rows = [*milestones.rows, {"target_params": min(sizes), "step": trainer.step, **row}]
    for row in rows:
        row.update({"variant": section.name, "baseline_params": None, "world_size": world.size})
    if world.is_main:
        write_json(done, {"rows": rows, "prune_config": pcfg.to_dict()})
    return rows


def check_sections(cfg: RunConfig, model: nn.Module) -> None:
    """Validate every prune section against `model` (sizes reachable, scopes, names) up front.

    Raises:
        PrunekitError: the first problem found, before any training starts.
    """
    base = count_params(model)
    for section in cfg.prune:
        if section.schedule == "narang":
            continue  # trains from scratch: see prunekit.pipelines.lm_narang.check_narang
        for size in target_sizes(section, base):
            if size >= base:
                raise PrunekitError(
                    f"prune section {section.name!r}: size {size:,} is not below the model's "
                    f"{base:,} parameters: give sizes as fractions below 1 (e.g. 0.5) or as "
                    f"counts below {base:,}"
                )
            prune_config(section, model, size, section.steps)


def compress(
    cfg: RunConfig,
    section: PruneSection,
    baseline: Path,
    data: LMData,
    out: Path,
    *,
    world: World = World(),
):
    """Run one recipe `prune` section from the baseline checkpoint; return one row per size."""
    torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)  # what ran before (another section, a resume) is moot
    base_params = count_params(load_trained(baseline))
    sizes = target_sizes(section, base_params)
    if section.schedule == "narang":  # lm_narang imports this module, hence the late import
        from prunekit.pipelines.lm_narang import narang_rows

        rows = narang_rows(cfg, section, baseline, data, out)
    elif section.schedule == "incremental":
        rows = _run_one(cfg, section, baseline, data, out, sizes, world)
    else:
        rows = []
        for size in sizes:
            with same_rng_state():  # each size starts alike, whether the others ran or not
                rows += _run_one(cfg, section, baseline, data, out / f"size-{size}", [size], world)
    for row in rows:
        row["baseline_params"] = base_params
        row["size_fraction"] = row["effective_params"] / base_params
    return rows
