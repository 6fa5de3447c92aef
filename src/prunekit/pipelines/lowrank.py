"""Seed 000 on any model and Task: stage 1 (regularized), then stage 2 per variance threshold.

    rows = run_lowrank(model, task, cfg.train, section, out, evaluate=my_metrics)

`model` is the untrained model (kept as a template: every stage works on a deep copy), `task` any
`prunekit.train.Task` (an LM's `LMTask`, a CTC task, ...). Layout of `out`:

    stage1/            checkpoints/{last,best}, nu.json (+ nu.png), result.json
    stage1/warm/       the warm start when `warm_steps` > 0: checkpoints/{last,best}, result.json
    stage2-<t>/        plan.json (the ranks), checkpoints/{last,best}, result.json

Stage 1 trains the model with every selected matrix factored at full rank (W = U V) and the trace
norm regularizer (regularizer: tracenorm), or unfactored with the same coefficients on |W|^2
(regularizer: l2, the baseline), logging nu(W) every `nu_every` steps; with `warm_steps` its first
steps train the plain model unregularized (the same in both arms) and the factoring and the
regularizer start from there (nu steps count from that point; the data order starts over, as
in any new run). Stage 2 starts from the best stage-1 checkpoint, keeps per matrix the smallest
rank explaining `t` of sum sigma^2 (U <- U_r S_r^(1/2), V <- S_r^(1/2) V_r^T; matrices that would
not get smaller stay dense) and fine-tunes without the regularizer. Both stages train with
AdamW's weight decay off (the regularizer replaces it; the same in both arms). Every stage resumes
exactly from its last checkpoint (factors, optimizer state, RNG, ν log), and a finished stage is
not run again.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.config import TrainConfig
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.lowrank.config import LowRankSection
from prunekit.lowrank.factor import (
    Matrix,
    factored,
    factorize,
    factors,
    full_rank_plan,
    select_matrices,
    unfactor,
)
from prunekit.lowrank.report import plot_nu
from prunekit.lowrank.svd import check_fraction, variance_plan
from prunekit.lowrank.tracenorm import L2, NuLogger, RegularizedTask, TraceNorm
from prunekit.prune.size import count_params
from prunekit.train.checkpoint import load_checkpoint
from prunekit.train.distributed import World, barrier
from prunekit.train.task import Task
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)
Evaluate = Callable[[nn.Module], dict[str, Any]]
FLOPS_CONTEXT = 32


def stage1_config(train: TrainConfig, section: LowRankSection) -> TrainConfig:
    """Stage 1 after its warm start: the recipe's training (or `stage1_steps` of it) less
    `warm_steps`, weight decay off; after a warm start the factors' new Adam state gets a short
    warmup (a tenth of the steps at most).

    Raises:
        PrunekitError: the warm start would take all of stage 1.
    """
    total = section.stage1_steps or train.steps
    steps = total - section.warm_steps
    if steps < 1:
        raise PrunekitError(
            f"lowrank section {section.name!r}: warm_steps {section.warm_steps} leaves none of "
            f"stage 1's {total} steps for the regularizer: lower warm_steps"
        )
    update = {"steps": steps, "weight_decay": 0.0, "eval_every": min(train.eval_every, steps)}
    if section.warm_steps:
        update["warmup_steps"] = min(train.warmup_steps, steps // 10)
    return train.model_copy(update=update)


def warm_config(train: TrainConfig, section: LowRankSection) -> TrainConfig:
    """The warm start: `warm_steps` of the recipe's warmup and then its peak learning rate held
    (the decay runs over the factored steps after it), weight decay off."""
    steps = section.warm_steps
    update = {"steps": steps, "decay": "constant", "weight_decay": 0.0,
              "eval_every": min(train.eval_every, steps)}  # fmt: skip
    return train.model_copy(update=update)


def stage2_config(train: TrainConfig, section: LowRankSection) -> TrainConfig:
    """Stage 2: `stage2_steps` at `stage2_lr`, a short warmup, weight decay off."""
    steps = section.stage2_steps
    return train.model_copy(
        update={
            "steps": steps,
            "lr": section.stage2_lr,
            "weight_decay": 0.0,
            "warmup_steps": min(train.warmup_steps, steps // 10),
            "eval_every": min(train.eval_every, steps),
        }
    )


def _stage1_model(
    template: nn.Module, section: LowRankSection, start: Path | None = None
) -> tuple[nn.Module, list[Matrix]]:
    """A copy of `template` (with the weights of checkpoint `start`), factored at full rank for
    the trace norm; and the matrices the regularizer works on."""
    model = copy.deepcopy(template)
    if start is not None:
        load_checkpoint(start, model)
    matrices = select_matrices(model, section.scope_config())
    if section.regularizer == "tracenorm":
        factorize(model, full_rank_plan(matrices))
    return model, matrices


def _regularizer(model: nn.Module, matrices: list[Matrix], section: LowRankSection):
    lam = (section.lambda_rec, section.lambda_nonrec)
    return TraceNorm(model, *lam) if section.regularizer == "tracenorm" else L2(matrices, *lam)


def _as_json(d: dict[str, Any]) -> dict[str, Any]:
    """`d` as it reads back from its JSON file (tuples become lists), so a finished stage that is
    read back and one that just ran return the same thing."""
    return json.loads(json.dumps(d))


def _finished(out: Path) -> dict[str, Any] | None:
    done = out / "result.json"
    return json.loads(done.read_text(encoding="utf-8")) if done.is_file() else None


def run_warm(
    template: nn.Module, task: Task, train: TrainConfig, section: LowRankSection, out: Path,
    *, world: World = World(), progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Train the plain model for `warm_steps` into `out` (resumable); returns its result dict."""
    if (done := _finished(out)) is not None:
        return done
    trainer = Trainer(
        copy.deepcopy(template), task, warm_config(train, section), out, world=world,
        progress=progress, run_state={"lowrank": section.model_dump(mode="json"), "stage": 0},
    )  # fmt: skip
    history = _resume_and_fit(trainer, "the warm start")
    result = {
        "steps": trainer.step, "train_seconds": history.train_seconds,
        "history": {"train": history.train, "valid": history.valid},
    }  # fmt: skip
    if world.is_main:
        write_json(out / "result.json", result)
    barrier(world)
    return _as_json(result)


def _resume_and_fit(trainer: Trainer, what: str) -> Any:
    """Continue `trainer` from its checkpoints/last when there is one, then train to the end;
    returns its history."""
    last = trainer.checkpoint_dir / "last"
    if last.exists():
        log.info("resuming %s from %s", what, last)
        trainer.resume(last)
    return trainer.fit()


def _after(warm: dict[str, Any] | None, key: str, history: list) -> list:
    """The warm start's `key` history, then stage 1's, steps counted from the warm start."""
    if warm is None:
        return history
    return warm["history"][key] + [[s + warm["steps"], v] for s, v in history]


def run_stage1(
    template: nn.Module, task: Task, train: TrainConfig, section: LowRankSection, out: Path,
    *, world: World = World(), progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Train stage 1 into `out` (its warm start into out/warm first, when `warm_steps` > 0;
    resuming from out/checkpoints/last); returns its result dict."""
    if (done := _finished(out)) is not None:
        return done
    cfg = stage1_config(train, section)
    warm = None
    if section.warm_steps:
        warm = run_warm(template, task, train, section, out / "warm", world=world,
                        progress=progress)  # fmt: skip
    start = out / "warm" / "checkpoints" / "last" if warm else None
    model, matrices = _stage1_model(template, section, start)
    reg = _regularizer(model, matrices, section)
    nu_log = NuLogger(matrices, section.nu_every, reg)
    trainer = Trainer(
        model, RegularizedTask(task, reg), cfg, out, world=world,
        callbacks=[nu_log], progress=progress,
        run_state={"lowrank": section.model_dump(mode="json"), "stage": 1},
    )  # fmt: skip
    if not (trainer.checkpoint_dir / "last").exists():
        nu_log.record(0)  # a resumed run has its rows in the checkpoint
    history = _resume_and_fit(trainer, "stage 1")
    result = {
        "regularizer": section.regularizer,
        "lambda_rec": section.lambda_rec,
        "lambda_nonrec": section.lambda_nonrec,
        "steps": trainer.step + (warm["steps"] if warm else 0),
        "warm_steps": warm["steps"] if warm else 0,
        "train_seconds": history.train_seconds + (warm["train_seconds"] if warm else 0.0),
        "best_valid_loss": history.best_valid_loss,
        "history": {
            "train": _after(warm, "train", history.train),
            "valid": _after(warm, "valid", history.valid),
        },
        "matrices": {m.name: {"shape": list(m.shape), "recurrent": m.recurrent} for m in matrices},
    }
    if world.is_main:
        write_json(out / "nu.json", {"every": section.nu_every, "rows": nu_log.rows})
        plot_nu(nu_log.rows, out / "nu.png")
        write_json(out / "result.json", result)
    barrier(world)
    return _as_json(result)


def stage2_model(
    template: nn.Module, section: LowRankSection, stage1_best: Path, threshold: float,
    plan_file: Path,
) -> tuple[nn.Module, dict[str, int]]:  # fmt: skip
    """The stage-1 model truncated to `threshold` (plan read from `plan_file` when it exists)."""
    model, matrices = _stage1_model(template, section)
    load_checkpoint(stage1_best, model)
    if plan_file.is_file():
        plan = json.loads(plan_file.read_text(encoding="utf-8"))["ranks"]
    else:
        current = factored(model) if section.regularizer == "tracenorm" else matrices
        plan = variance_plan(current, threshold)
    unfactor(model)  # matrices left out of the plan stay dense
    factorize(model, plan)
    return model, plan


def lowrank_flops(model: nn.Module, context_len: int = FLOPS_CONTEXT) -> int:
    """FLOPs per token of `model` run with its factored matrices as two thin matmuls."""
    saved = 0
    for mat in factored(model):
        m, n = mat.shape
        r = int(factors(mat.module, mat.attr)[0].shape[1])
        saved += 2 * (m * n - r * (m + n))
    return flops_per_token(model, context_len) - saved


def run_stage2(
    template: nn.Module, task: Task, train: TrainConfig, section: LowRankSection,
    threshold: float, stage1_best: Path, out: Path, *, evaluate: Evaluate | None = None,
    world: World = World(), progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Truncate the stage-1 model to `threshold` and fine-tune it into `out`; returns its row."""
    check_fraction(threshold)
    if (done := _finished(out)) is not None:
        return done
    model, plan = stage2_model(template, section, stage1_best, threshold, out / "plan.json")
    if world.is_main and not (out / "plan.json").is_file():
        write_json(out / "plan.json", {"threshold": threshold, "ranks": plan})
    trainer = Trainer(
        model, task, stage2_config(train, section), out, world=world, progress=progress,
        run_state={"lowrank": section.model_dump(mode="json"), "stage": 2, "ranks": plan},
    )  # fmt: skip
    history = _resume_and_fit(trainer, "stage 2")
    barrier(world)
    load_checkpoint(trainer.checkpoint_dir / "best", model)
    row = _row(model, template, section, threshold, plan)
    row.update(
        stage2_steps=trainer.step, stage2_train_seconds=history.train_seconds,
        valid_loss=task.validate(model, world),
    )  # fmt: skip
    if evaluate is not None:
        row.update(evaluate(model))
    if world.is_main:
        write_json(out / "result.json", row)
    return _as_json(row)


def _row(
    model: nn.Module, template: nn.Module, section: LowRankSection, threshold: float,
    plan: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """Sizes of a stage-2 model: parameters as stored, and the dense ones it replaces."""
    matrices = select_matrices(template, section.scope_config())
    shapes = {m.name: m.shape for m in matrices}
    dense_scope = sum(m * n for m, n in shapes.values())
    kept = {n: plan[n] * sum(s) if n in plan else s[0] * s[1] for n, s in shapes.items()}
    return {
        "variant": f"{section.name}@{threshold:g}",
        "regularizer": section.regularizer,
        "lambda_rec": section.lambda_rec,
        "lambda_nonrec": section.lambda_nonrec,
        "threshold": threshold,
        "ranks": plan,
        "dense_matrices": sorted(set(shapes) - set(plan)),
        "params": count_params(model),
        "dense_params": count_params(template),
        "scope_params": sum(kept.values()),
        "scope_dense_params": dense_scope,
        "flops_per_token": lowrank_flops(model),
        "dense_flops_per_token": flops_per_token(template, FLOPS_CONTEXT),
        "flops_context_len": FLOPS_CONTEXT,
    }


def run_lowrank(
    model: nn.Module, task: Task, train: TrainConfig, section: LowRankSection, out: str | Path,
    *, evaluate: Evaluate | None = None, world: World = World(), progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Stage 1 then one stage 2 per threshold of `section` (one grid point), all resumable.

    Args:
        model: the untrained model (not modified; each stage trains a deep copy).
        task: what to train on (any `prunekit.train.Task`).
        train: the recipe's TrainConfig (stage 1 uses it, stage 2 shortens it).
        section: one `LowRankSection` (use `section.grid()` for lists of coefficients).
        out: run folder (see the module docstring).
        evaluate: model -> extra metrics for every stage-2 row (perplexity, WER, ...).

    Returns:
        {"stage1": stage-1 result, "rows": one row per threshold}.
    """
    out = Path(out)
    torch.manual_seed(train.seed)
    stage1 = run_stage1(model, task, train, section, out / "stage1", world=world, progress=progress)
    best = out / "stage1" / "checkpoints" / "best"
    rows = []
    for t in section.thresholds:
        row = run_stage2(
            model, task, train, section, t, best, out / f"stage2-{t:g}", evaluate=evaluate,
            world=world, progress=progress,
        )  # fmt: skip
        row["stage1_train_seconds"] = stage1["train_seconds"]
        row["stage1_steps"] = stage1["steps"]
        rows.append(row)
    return {"stage1": stage1, "rows": rows}
