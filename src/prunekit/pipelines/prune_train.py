"""Prune while training from scratch (Narang et al.'s single training run), on any model and Task.

    q = narang_q(trained_dense, scope)                       # per layer type, from a dense run
    pcfg = PruneConfig(criterion="magnitude", scope=scope,
                       schedule=paper_ramp(steps, len(task), q=q))
    result = train_pruned(fresh_model, task, train_cfg, pcfg, out)

The Pruner is a Trainer callback, so masks, pruner state (q values, step counter, scores) and the
optimizer state live in the checkpoints: a killed run resumes exactly from out/checkpoints/last.
The model is evaluated as it ends (the last step, not the best validation point: early
checkpoints are denser). `narang_compare` gives the same model the cubic schedule (eq. 4) over
the same window, to the sparsity Narang reached, with other criteria (e.g. Taylor).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.atomic import write_json
from prunekit.config import TrainConfig
from prunekit.errors import PrunekitError
from prunekit.prune import Cubic, NarangRamp, PruneConfig, Pruner
from prunekit.prune.size import count_params
from prunekit.train.distributed import World, barrier
from prunekit.train.task import Task
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)
Evaluate = Callable[[nn.Module], dict[str, Any]]


def train_pruned(
    model: nn.Module, task: Task, train: TrainConfig, pcfg: PruneConfig, out: str | Path,
    *, evaluate: Evaluate | None = None, world: World = World(), progress: bool = True,
    run_state: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train `model` (modified) on `task` for `train.steps` while `pcfg` prunes it.

    Returns (and writes to out/result.json) {"prune_config", "steps", "sparsity" (of the scope),
    "per_tensor" (Pruner.report()), "effective_params", "train_seconds", "valid_loss",
    "history", **evaluate(model)}. A finished run is read back from result.json.
    """
    out = Path(out)
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    pruner = Pruner(model, pcfg).attach()
    trainer = Trainer(
        model, task, train, out, world=world, callbacks=[pruner], progress=progress,
        run_state={**(run_state or {}), "prune": pcfg.to_dict()},
    )  # fmt: skip
    pruner.add_optimizer(trainer.optimizer)
    last = trainer.checkpoint_dir / "last"
    if last.exists():
        log.info("resuming pruned training from %s", last)
        trainer.resume(last)
    history = trainer.fit()
    barrier(world)
    result = {
        "prune_config": pcfg.to_dict(),
        "steps": trainer.step,
        "sparsity": pruner.sparsity(),
        "per_tensor": pruner.report(),
        "effective_params": count_params(model),
        "train_seconds": history.train_seconds,
        "valid_loss": task.validate(model, world),
        "history": {"train": history.train, "valid": history.valid},
    }
    if evaluate is not None:
        result.update(evaluate(model))
    result = json.loads(json.dumps(result))  # as it reads back
    if world.is_main:
        write_json(done, result)
    return result


def cubic_like(ramp: NarangRamp, sparsity: float) -> Cubic:
    """The cubic schedule over Narang's window: from `start` to `sparsity` at the last update
    step before `end`, every `freq` steps."""
    n = max(1, (ramp.last_step - ramp.start) // ramp.freq)
    return Cubic(s_i=0.0, s_f=sparsity, t0=ramp.last_step - n * ramp.freq, dt=ramp.freq, n=n)


def narang_compare(
    build: Callable[[], nn.Module], task: Task, train: TrainConfig, narang: PruneConfig,
    sparsity: float, criteria: list[str], out: str | Path, **kw: Any,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Train fresh models (`build()`, same seed) with the cubic schedule to `sparsity` over the
    Narang run's window, once per criterion; returns {criterion: train_pruned result}."""
    if not isinstance(narang.schedule, NarangRamp):
        raise PrunekitError("narang_compare needs the PruneConfig of a NarangRamp run")
    results = {}
    for criterion in criteria:
        pcfg = PruneConfig(
            criterion=criterion, method="unstructured", scope=narang.scope, budget="layer",
            schedule=cubic_like(narang.schedule, min(sparsity, 0.999)),
        )  # fmt: skip
        results[criterion] = train_pruned(build(), task, train, pcfg, Path(out) / criterion, **kw)
    return results
