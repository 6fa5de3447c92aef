"""Seed 000's stage-1 regularizers and diagnostics, added to any Trainer run without a new trainer.

- `TraceNorm`: lambda_rec / 2 sum_rec (|U|_F^2 + |V|_F^2) + lambda_nonrec / 2 sum_other (...)
  over factored matrices W = U V. At the optimum over factorizations this is the trace (nuclear)
  norm of W (|W|_* = min_{UV=W} (|U|^2 + |V|^2) / 2; Srebro et al. 2005).
- `L2`: the same coefficients on |W|_F^2 of the unfactored matrices: the paper's baseline.
- `RegularizedTask(task, regularizer)`: a `Task` whose loss is the task's plus the regularizer, so
  `Trainer(model, RegularizedTask(task, TraceNorm(...)), ...)` trains stage 1.
- `NuLogger`: a Trainer callback that records nu(W) (and the 90 % / 99 % variance ranks) of every
  matrix every `every` steps, kept in checkpoints so a resumed run continues the same log.

Fairness of the comparison: both regularizers enter the loss (so Adam preconditions them alike);
the low-rank pipeline trains both arms with AdamW's decoupled weight decay off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.lowrank.factor import Matrix, factored, factors
from prunekit.lowrank.svd import nu, variance_ranks
from prunekit.train.distributed import World


class TraceNorm:
    """lambda / 2 (|U|_F^2 + |V|_F^2) summed over the factored matrices of `model`.

    Args:
        model: the model whose factored matrices are regularized (read at every call).
        lambda_rec: coefficient of recurrent matrices (`weight_hh`).
        lambda_nonrec: coefficient of all the others (`weight_ih`, Linear).
    """

    def __init__(self, model: nn.Module, lambda_rec: float, lambda_nonrec: float) -> None:
        self.matrices = factored(model)
        self.lambda_rec, self.lambda_nonrec = float(lambda_rec), float(lambda_nonrec)

    def __call__(self) -> Tensor:
        total = torch.zeros(())
        for mat in self.matrices:
            lam = self.lambda_rec if mat.recurrent else self.lambda_nonrec
            if lam:
                U, V = factors(mat.module, mat.attr)
                total = total + 0.5 * lam * (U.pow(2).sum() + V.pow(2).sum())
        return total


class L2:
    """lambda / 2 |W|_F^2 summed over `matrices` (plain, unfactored): the baseline of seed 000."""

    def __init__(self, matrices: list[Matrix], lambda_rec: float, lambda_nonrec: float) -> None:
        self.matrices = matrices
        self.lambda_rec, self.lambda_nonrec = float(lambda_rec), float(lambda_nonrec)

    def __call__(self) -> Tensor:
        total = torch.zeros(())
        for mat in self.matrices:
            lam = self.lambda_rec if mat.recurrent else self.lambda_nonrec
            if lam:
                total = total + 0.5 * lam * mat.weight.pow(2).sum()
        return total


class RegularizedTask:
    """`task` with `regularizer()` added to every training loss (validation is the task's own).

    The Trainer's logged training loss therefore includes the regularizer (NuLogger records the
    term alone). Any other attribute (e.g. a CTC task's feature statistics) is read from `task`.
    """

    def __init__(self, task: Any, regularizer: Callable[[], Tensor]) -> None:
        self.task, self.regularizer = task, regularizer
        self.unit = task.unit

    def __len__(self) -> int:
        return len(self.task)

    def __getattr__(self, name: str) -> Any:
        if name == "task":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        return self.task.order(epoch, seed, shuffle)

    def batch(self, index: int, world: World) -> Any:
        return self.task.batch(index, world)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        return self.task.loss(model, batch) + self.regularizer()

    def units(self, batch: Any, world: World) -> int:
        return self.task.units(batch, world)

    def validate(self, model: nn.Module, world: World) -> float:
        return self.task.validate(model, world)


class NuLogger:
    """Trainer callback: nu(W), r90 and r99 of every matrix every `every` optimizer steps.

    `rows` is a list of {"step", "nu": {name: value}, "r90": {...}, "r99": {...},
    "regularizer": value}; it is part of the checkpoint (`state_dict`), so a resumed run keeps it.
    """

    def __init__(
        self, matrices: list[Matrix], every: int, regularizer: Callable[[], Tensor] | None = None
    ) -> None:
        self.matrices, self.every, self.regularizer = matrices, int(every), regularizer
        self.rows: list[dict[str, Any]] = []

    @torch.no_grad()
    def record(self, step: int) -> None:
        """Append the row of the model as it is now, labelled `step`."""
        row: dict[str, Any] = {"step": step, "nu": {}, "r90": {}, "r99": {}}
        for mat in self.matrices:
            w = mat.weight.detach()
            row["nu"][mat.name] = nu(w)
            for key, value in variance_ranks(w).items():
                row[key][mat.name] = value
        if self.regularizer is not None:
            row["regularizer"] = float(self.regularizer())
        self.rows.append(row)

    def after_step(self, trainer: Any, step: int) -> None:
        if step % self.every == 0 or step == trainer.cfg.steps:
            self.record(step)

    def state_dict(self) -> dict[str, Any]:
        return {"meta": {"rows": self.rows}, "tensors": {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["meta"]["rows"])
