"""The larger sizes an incremental pruning run delivers on its way to the smallest one.

The section's cubic schedule lands exactly on each larger size (`prune.Cubic.stops`), so the
model is at that size (to one pruning group) when the size is reached. `SizeMilestones` saves it
then, as `size-<N>/reached`; after the run, `finetune_milestone` fine-tunes each saved model with
its masks fixed for as many steps as the smallest size gets after the last pruning update, in
`size-<N>/checkpoints/`, so every size is measured after the same recovery.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.config import TrainConfig
from prunekit.pipelines.lm_artifact import load_lm_checkpoint
from prunekit.prune.size import count_params
from prunekit.train.checkpoint import read_checkpoint_state, restore_interrupted
from prunekit.train.distributed import World
from prunekit.train.task import Task
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)


class SizeMilestones:
    """Trainer callback: save the model when it first gets <= each size (`size-<N>/reached`).

    Sizes only change on pruning updates, so the (whole-model) count runs only after those.
    `reached[str(size)]` = {"step": optimizer steps done, "params": effective parameters}.
    """

    def __init__(self, sizes: list[int], schedule: Any, out: Path):
        self.pending = sorted(sizes, reverse=True)
        self.reached: dict[str, dict[str, int]] = {}
        self.schedule, self.out = schedule, out

    def after_step(self, trainer: Trainer, step: int) -> None:
        if not self.pending or not self.schedule.should_update(step - 1):
            return  # `step` optimizer steps are done; the pruner updated after step index step-1
        params = count_params(trainer.model)
        for size in [s for s in self.pending if params <= s]:
            self.pending.remove(size)
            self.reached[str(size)] = {"step": step, "params": params}
            if trainer.world.is_main:
                trainer.save(reached_checkpoint(self.out, size))
            log.info("reached %d params (target %d) at step %d", params, size, step)

    def state_dict(self) -> dict[str, Any]:
        return {"meta": {"pending": self.pending, "reached": self.reached}, "tensors": {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pending, reached = state["meta"]["pending"], state["meta"]["reached"]
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in pending) or not all(
            isinstance(v, dict) and all(isinstance(v.get(k), int) for k in ("step", "params"))
            for v in reached.values()
        ):
            raise TypeError("size milestones state is not a list of sizes and reached sizes")
        self.pending, self.reached = list(pending), dict(reached)


def reached_checkpoint(out: Path, size: int) -> Path:
    """Where the model is saved when the run reaches `size` parameters."""
    return out / f"size-{size}" / "reached"


def finetune_steps(schedule: Any, steps: int) -> int:
    """Steps a run of `steps` trains after the schedule's last pruning update."""
    return max(0, steps - (schedule.last_step + 1))


def finetune_milestone(
    out: Path,
    size: int,
    task: Task,
    train: TrainConfig | None,
    *,
    run_state: dict[str, Any],
    files: dict[str, bytes],
    world: World = World(),
    progress: bool = True,
    label: str = "fine-tune",
) -> tuple[nn.Module, Path]:
    """Fine-tune the model saved at `size` as `train` says (masks fixed); resumable.

    Args:
        out: the section's run folder.
        size: the milestone's target size.
        task: the training task (the section's data).
        train: the fine-tuning settings, or None for no fine-tuning.
        run_state, files: kept in the checkpoints (the pruning config is read from the
            saved model's own checkpoint).
        world: under DDP every rank fine-tunes (rank 0 wrote the saved model and writes).

    Returns:
        (the fine-tuned model, its checkpoint), or the saved model and its checkpoint when
        `train` is None.
    """
    reached = reached_checkpoint(out, size)
    model = load_lm_checkpoint(reached)
    if train is None:
        return model, reached
    prune = read_checkpoint_state(reached)["state"]["run"]["prune"]
    folder = out / f"size-{size}"
    state = {**run_state, "prune": prune, "milestone": {"target_params": size}}
    trainer = Trainer(
        model, task, train, folder, world=world, run_state=state, files=files,
        progress=progress, label=f"{label} size {size:,}",
    )  # fmt: skip
    last = trainer.checkpoint_dir / "last"
    if restore_interrupted(last):
        trainer.resume(last)
    trainer.fit()
    return model, last
