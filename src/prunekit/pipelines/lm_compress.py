"""Compress a trained baseline as a recipe's `prune` sections say, and measure every result.

Incremental sections run once: the cubic schedule (eq. 4) goes to the smallest size, landing
exactly on each larger size on its way; the model is saved there and fine-tuned afterwards as
long as the smallest size recovers (`lm_milestones`). One-shot sections run once per size: prune
at step 0, then fine-tune. Narang sections train from scratch (`lm_narang`). Every run starts
from the recipe's seed, checkpoints every `train.checkpoint_every` steps (default: a tenth of the
section), resumes from its last checkpoint, and is bound to its baseline, corpus and section
(`run_binding`): a changed one is redone, never reused. Under `torchrun` every rank trains and
evaluates its share; rank 0 writes.

Each row says which size it targets, how many parameters the model has, at which optimizer step
the size was reached, how many steps it was fine-tuned after, and where its checkpoint is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.config import PruneSection, RunConfig
from prunekit.errors import PrunekitError
from prunekit.eval.flops import sparse_flops_per_token
from prunekit.export.io import file_sha256
from prunekit.models import build_model
from prunekit.pipelines.lm_artifact import TOKENIZER_FILE
from prunekit.pipelines.lm_baseline import LMData, evaluate, lm_task
from prunekit.pipelines.lm_milestones import SizeMilestones, finetune_milestone, finetune_steps
from prunekit.pipelines.run_binding import bind, bound_train, data_fingerprint
from prunekit.prune import Cubic, OneShot, PruneConfig, Pruner, ScopeConfig, calibrate
from prunekit.prune.size import count_params, sparsity_for_size
from prunekit.seeding import same_rng_state, seed_everything
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state, restore_interrupted
from prunekit.train.distributed import World, barrier
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


def ramp_updates(section: PruneSection, steps: int) -> int:
    """Intervals of the cubic ramp: `ramp` of `steps` every `frequency` steps, the last update
    falling on a step the run takes (index <= steps - 1).

    Raises:
        PrunekitError: `steps` leaves no update after step 0 (nothing would be pruned).
    """
    n = min(round(section.ramp * steps / section.frequency), (steps - 1) // section.frequency)
    if n < 1:
        raise PrunekitError(
            f"prune section '{section.name}': steps={steps} with frequency={section.frequency} "
            "leaves no pruning update after step 0, so nothing would be pruned: raise steps "
            f"above {section.frequency} (with room for ramp={section.ramp}) or lower frequency"
        )
    return n


def prune_config(
    section: PruneSection, model: nn.Module, target: int, steps: int, stops: Sequence[int] = ()
) -> PruneConfig:
    """The PruneConfig that takes the dense `model` to `target` parameters (validates everything).

    Args:
        stops: larger sizes an incremental schedule must land on exactly on its way.
    """
    known = [f.name for f in dataclasses.fields(ScopeConfig)]
    unknown = [k for k in section.scope if k not in known]
    if unknown:
        raise PrunekitError(
            f"prune section {section.name!r}: scope key {unknown[0]!r} is not known: use "
            f"{', '.join(known)}"
        )
    scope = ScopeConfig(**section.scope)

    def sparsity(size: int) -> float:
        return sparsity_for_size(
            model,
            size,
            scope,
            method=section.method,
            method_args=section.method_args,
            budget=section.budget,
        )

    s = sparsity(target)
    if section.schedule == "one-shot":
        schedule = OneShot(sparsity=s, step=0)
    else:
        landed = tuple(sorted({x for x in map(sparsity, stops) if 0.0 < x < s}))
        n = ramp_updates(section, steps)
        try:
            schedule = Cubic(s_i=0.0, s_f=s, t0=0, dt=section.frequency, n=n, stops=landed)
        except PrunekitError as err:
            raise PrunekitError(
                f"prune section '{section.name}': {len(stops) + 1} sizes need more pruning "
                f"updates than steps={steps} every frequency={section.frequency} give ({err}): "
                "raise steps or lower frequency"
            ) from None
    return PruneConfig(
        criterion=section.criterion,
        method=section.method,
        method_args=section.method_args,
        schedule=schedule,
        scope=scope,
        budget=section.budget,
    )


def measure(
    model: nn.Module,
    data: LMData,
    cfg: RunConfig,
    *,
    world: World = World(),
    progress: bool = False,
) -> dict[str, Any]:
    """`lm_baseline.evaluate` plus the effective size and the zero-skipping FLOPs.

    The masked model's storage (weights + masks, larger than the dense model) is
    `masked_size_bytes`; what the compressed model takes deployed is the compact export's size
    (`lm_speed` adds it as `compact_size_bytes`).
    """
    out = evaluate(model, data, cfg, world=world, progress=progress)
    out["masked_size_bytes"] = out.pop("size_bytes")
    out["effective_params"] = count_params(model)
    out["sparse_flops_per_token"] = sparse_flops_per_token(model, (cfg.train.bptt + 1) // 2)
    return out


def _train_cfg(cfg: RunConfig, section: PruneSection, steps: int | None = None):
    steps = section.steps if steps is None else steps
    return cfg.train.model_copy(
        update={
            "steps": steps,
            "lr": section.lr,
            "warmup_steps": min(cfg.train.warmup_steps, steps // 10),
            "eval_every": steps,
            "checkpoint_every": cfg.train.checkpoint_every or max(1, steps // 10),
        }
    )


def section_binding(
    cfg: RunConfig, section: PruneSection, baseline: Path, data: LMData
) -> dict[str, Any]:
    """What a section's results depend on: the baseline's weights, corpus, section, training."""
    return {
        **data_fingerprint(cfg, data.corpus_sha256),
        "baseline_sha256": file_sha256(baseline / "model.safetensors"),
        "section": section.model_dump(mode="json"),
        "train": bound_train(cfg),
    }


def _row(
    model: nn.Module,
    data: LMData,
    cfg: RunConfig,
    target: int,
    at: int,
    tuned: int,
    ckpt: Path,
    world: World = World(),
) -> dict[str, Any]:
    row = {"target_params": target, "pruned_at_step": at, "finetune_steps": tuned}
    row.update(step=at + tuned, checkpoint=str(ckpt), **measure(model, data, cfg, world=world))
    row["on_target"] = abs(row["effective_params"] - target) <= 0.01 * target
    if not row["on_target"]:
        log.warning(
            "%s: %d parameters, not within 1 %% of the target %d", ckpt, row["effective_params"],
            target,
        )  # fmt: skip
    return row


def _milestone_rows(
    cfg, section, data, out, milestones, tuned, context, world
) -> list[dict[str, Any]]:
    """Fine-tune and measure the model saved at each larger size (see `lm_milestones`); each
    fine-tuning starts from the same RNG state, whether the others ran (or resumed) or not."""
    if milestones.pending:  # cannot happen when the last update lands on the smallest size
        raise PrunekitError(
            f"prune section '{section.name}' never reached {milestones.pending}: raise its steps"
        )
    rows = []
    train = _train_cfg(cfg, section, tuned) if tuned else None
    barrier(world)  # rank 0 wrote the milestones' checkpoints
    for size in sorted(map(int, milestones.reached), reverse=True):
        with same_rng_state():
            model, ckpt = finetune_milestone(
                out, size, lm_task(data, cfg), train, world=world, **context
            )
        at = milestones.reached[str(size)]["step"]
        rows.append(_row(model, data, cfg, size, at, tuned, ckpt, world))
    return rows


def _run_one(
    cfg: RunConfig,
    section: PruneSection,
    baseline: Path,
    data: LMData,
    out: Path,
    sizes: list[int],
    *,
    world: World = World(),
    resume: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One pruning run to min(sizes) (landing on the others); returns a row per size."""
    binding = section_binding(cfg, section, baseline, data)
    bind(out, binding, resume=resume, redo=True, write=world.is_main)
    barrier(world)  # rank 0 may have cleared an earlier run
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())["rows"]
    model = load_trained(baseline)
    incremental = section.schedule == "incremental"
    larger = [s for s in sizes if s != min(sizes)]
    pcfg = prune_config(section, model, min(sizes), section.steps, stops=larger)
    pruner = Pruner(model, pcfg).attach()
    task = lm_task(data, cfg)
    batches = task.train
    last = out / "checkpoints" / "last"
    resuming = restore_interrupted(last)
    if not incremental and not resuming:
        if pruner.criterion.needs_grad or pruner.criterion.needs_inputs:
            n = min(section.calibration_batches, len(batches))
            calibrate(pruner, (batches.window(i) for i in range(n)))
        pruner.prune_now(pcfg.schedule.sparsity)  # type: ignore[union-attr]
    milestones = SizeMilestones(larger, pcfg.schedule, out)
    context = {
        "run_state": {"recipe": cfg.model_dump(mode="json"), "prune": pcfg.to_dict()},
        "files": {TOKENIZER_FILE: data.tokenizer.to_bytes()},
        "progress": progress,
        "label": f"prune {section.name}",
    }
    callbacks: list[Any] = [pruner, milestones] if incremental else []
    trainer = Trainer(
        model, task, _train_cfg(cfg, section), out, world=world, callbacks=callbacks, **context
    )
    if incremental:
        pruner.add_optimizer(trainer.optimizer)
    if resuming:
        trainer.resume(last)
    trainer.fit()
    tuned = finetune_steps(pcfg.schedule, section.steps) if incremental else section.steps
    at = section.steps - tuned
    final = _row(model, data, cfg, min(sizes), at, tuned, last, world)
    milestone_rows = _milestone_rows(cfg, section, data, out, milestones, tuned, context, world)
    rows = [*milestone_rows, final]
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
        sizes = target_sizes(section, base)
        for size in sizes:
            if size >= base:
                raise PrunekitError(
                    f"prune section {section.name!r}: size {size:,} is not below the model's "
                    f"{base:,} parameters: give sizes as fractions below 1 (e.g. 0.5) or as "
                    f"counts below {base:,}"
                )
            prune_config(section, model, size, section.steps)
        if section.schedule == "incremental":  # the stops must fit the ramp too
            prune_config(section, model, min(sizes), section.steps, stops=sizes[:-1])


def compress(
    cfg: RunConfig,
    section: PruneSection,
    baseline: Path,
    data: LMData,
    out: Path,
    *,
    world: World = World(),
    resume: bool = True,
    progress: bool = True,
):
    """Run one recipe `prune` section from the baseline checkpoint; return one row per size."""
    torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)  # what ran before (another section, a resume) is moot
    base_params = count_params(load_trained(baseline))
    sizes = target_sizes(section, base_params)
    opts = {"world": world, "resume": resume, "progress": progress}
    if section.schedule == "narang":  # lm_narang imports this module, hence the late import
        from prunekit.pipelines.lm_narang import narang_rows

        binding = section_binding(cfg, section, baseline, data)
        bind(out, binding, resume=resume, redo=True, write=world.is_main, owned=True)
        rows = narang_rows(cfg, section, baseline, data, out)
    elif section.schedule == "incremental":
        rows = _run_one(cfg, section, baseline, data, out, sizes, **opts)
    else:
        rows = []
        for size in sizes:
            with same_rng_state():  # each size starts alike, whether the others ran or not
                rows += _run_one(cfg, section, baseline, data, out / f"size-{size}", [size], **opts)
    for row in rows:
        row["baseline_params"] = base_params
        row["size_fraction"] = row["effective_params"] / base_params
    return rows
