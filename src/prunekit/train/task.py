"""What the Trainer trains on: batches, a loss and a validation score, one `Task` per model family.

The Trainer owns optimisation, checkpoints, resume and DDP; a task owns the data and the objective,
so a language model (`LMTask`), a CTC acoustic model or a keyword classifier share one trainer.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.data.batching import LMBatches
from prunekit.eval.perplexity import score_tokens
from prunekit.train.distributed import World


class Task(Protocol):
    """The data and objective of one training run.

    Attributes:
        unit: what `units` counts, shown in progress bars as `<unit>/s` (e.g. "tok", "frame").
    """

    unit: str

    def __len__(self) -> int:
        """Training batches per epoch."""
        ...

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        """The batch indices of one epoch: a function of (epoch, seed) only, for exact resume."""
        ...

    def batch(self, index: int, world: World) -> Any:
        """This process's share of training batch `index` (all of it in one process)."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean training loss (a scalar with grad) of `model` (maybe DDP-wrapped) on `batch`."""
        ...

    def units(self, batch: Any, world: World) -> int:
        """How many units (tokens, frames, ...) the global batch holds, for throughput."""
        ...

    def validate(self, model: nn.Module, world: World) -> float:
        """Validation loss of `model` (lower is better; every rank returns the same value)."""
        ...


class LMTask:
    """Next-token prediction: cross-entropy on `LMBatches` windows, perplexity on a valid stream.

    Args:
        train: training windows (global batch; each DDP rank takes its rows).
        valid: (N,) validation token stream.
        eval_batch_size: rows when scoring `valid`.
        bptt: window length when scoring `valid`.
    """

    unit = "tok"

    def __init__(
        self, train: LMBatches, valid: torch.Tensor, *, eval_batch_size: int, bptt: int
    ) -> None:
        self.train, self.valid = train, valid
        self.eval_batch_size, self.bptt = eval_batch_size, bptt

    def __len__(self) -> int:
        return len(self.train)

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        return self.train.order(epoch, seed, shuffle)

    def batch(self, index: int, world: World) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.train.window(index)  # (B, T) each
        return LMBatches.shard(x, world.rank, world.size), LMBatches.shard(
            y, world.rank, world.size
        )

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def units(self, batch: tuple[torch.Tensor, torch.Tensor], world: World) -> int:
        return batch[1].numel() * world.size

    def validate(self, model: nn.Module, world: World) -> float:
        score = score_tokens(
            model, self.valid, batch_size=self.eval_batch_size, bptt=self.bptt, world=world
        )
        return score.loss
