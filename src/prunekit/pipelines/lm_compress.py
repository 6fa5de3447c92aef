"""Compress a trained baseline as a recipe's `prune` sections say, and measure every result.

Incremental sections run once: the cubic schedule (eq. 4) goes to the smallest size, and a
checkpoint + evaluation is taken as the model passes each larger size. One-shot sections run once
per size: prune at step 0, then fine-tune. Every run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.config import PruneSection, RunConfig
from prunekit.eval.flops import sparse_flops_per_token
from prunekit.models import build_model
from prunekit.pipelines.lm_baseline import LMData, evaluate, lm_task
from prunekit.prune import Cubic, OneShot, PruneConfig, Pruner, ScopeConfig, calibrate
from prunekit.prune.size import count_params, sparsity_for_size
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state
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


def measure(model: nn.Module, data: LMData, cfg: RunConfig) -> dict[str, Any]:
    """`experiment.evaluate` plus the effective size and the zero-skipping FLOPs."""
    out = evaluate(model, data, cfg)
    out["effective_params"] = count_params(model)
    out["sparse_flops_per_token"] = sparse_flops_per_token(model, (cfg.train.bptt + 1) // 2)
    return out


class SizeMilestones:
    """Trainer callback: checkpoint and evaluate the model when it first gets <= each size.

    Sizes only change on pruning steps, so the (whole-model) count runs only after those.
    """

    def __init__(self, sizes: list[int], schedule: Any, data: LMData, cfg: RunConfig, out: Path):
        self.pending = sorted(sizes, reverse=True)
        self.rows: list[dict[str, Any]] = []
        self.schedule, self.data, self.cfg, self.out = schedule, data, cfg, out

    def after_step(self, trainer: Trainer, step: int) -> None:
        if not self.pending or not self.schedule.should_update(step - 1):
            return  # `step` optimizer steps are done; the pruner updated after step index step-1
        params = count_params(trainer.model)
        passed = [s for s in self.pending if params <= s]
        if not passed:
            return
        row = measure(trainer.model, self.data, self.cfg)
        for size in passed:
            self.pending.remove(size)
            trainer.save(self.out / f"size-{size}")
            self.rows.append({"target_params": size, "step": step, **row})
            log.info("reached %d params at step %d: valid ppl %.2f", size, step, row["valid_ppl"])

    def state_dict(self) -> dict[str, Any]:
        return {"meta": {"pending": self.pending, "rows": self.rows}, "tensors": {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pending, self.rows = state["meta"]["pending"], state["meta"]["rows"]


def _train_cfg(cfg: RunConfig, section: PruneSection):
    return cfg.train.model_copy(
        update={
            "steps": section.steps,
            "lr": section.lr,
            "warmup_steps": min(cfg.train.warmup_steps, section.steps // 10),
            "eval_every": section.steps,
        }
    )


def _run_one(
    cfg: RunConfig,
    section: PruneSection,
    baseline: Path,
    data: LMData,
    out: Path,
    sizes: list[int],
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
    last = out / "checkpoints" / "last"
    incremental = section.schedule == "incremental"
    if not incremental and not last.exists():
        if pruner.criterion.needs_grad or pruner.criterion.needs_inputs:
            n = min(section.calibration_batches, len(batches))
            calibrate(pruner, (batches.window(i) for i in range(n)))
        pruner.prune_now(pcfg.schedule.sparsity)  # type: ignore[union-attr]
    larger = [s for s in sizes if s != min(sizes)]
    milestones = SizeMilestones(larger, pcfg.schedule, data, cfg, out)
    callbacks: list[Any] = [pruner, milestones] if incremental else []
    trainer = Trainer(
        model,
        task,
        _train_cfg(cfg, section),
        out,
        callbacks=callbacks,
        run_state={"recipe": cfg.model_dump(mode="json"), "prune": pcfg.to_dict()},
    )
    if incremental:
        pruner.add_optimizer(trainer.optimizer)
    if last.exists():
        trainer.resume(last)
    trainer.fit()
    final = {"target_params": min(sizes), "step": trainer.step, **measure(model, data, cfg)}
    rows = [*milestones.rows, final]
    for row in rows:
        row.update({"variant": section.name, "baseline_params": None})
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
            prune_config(section, model, size, section.steps)


def compress(cfg: RunConfig, section: PruneSection, baseline: Path, data: LMData, out: Path):
    """Run one recipe `prune` section from the baseline checkpoint; return one row per size."""
    torch.set_num_threads(cfg.train.threads)
    base_params = count_params(load_trained(baseline))
    sizes = target_sizes(section, base_params)
    if section.schedule == "narang":  # lm_narang imports this module, hence the late import
        from prunekit.pipelines.lm_narang import narang_rows

        rows = narang_rows(cfg, section, baseline, data, out)
    elif section.schedule == "incremental":
        rows = _run_one(cfg, section, baseline, data, out, sizes)
    else:
        rows = [
            r
            for size in sizes
            for r in _run_one(cfg, section, baseline, data, out / f"size-{size}", [size])
        ]
    for row in rows:
        row["baseline_params"] = base_params
        row["size_fraction"] = row["effective_params"] / base_params
    return rows
