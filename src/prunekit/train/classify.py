"""`ClassifyTask`: the Trainer's task for a classifier over a tensor of examples (keyword spotting).

Examples are shuffled afresh every epoch from (seed, epoch) alone, so a resumed run sees the same
batches as an uninterrupted one. Validation is the mean cross-entropy on a held-out set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.eval.accuracy import cross_entropy
from prunekit.train.distributed import World

_SEED_STRIDE = 1_000_003


def _check_pair(name: str, x: Tensor, y: Tensor) -> None:
    if x.shape[0] != y.shape[0] or y.dim() != 1 or x.shape[0] == 0:
        raise PrunekitError(
            f"{name} has {x.shape[0]} examples and labels of shape {tuple(y.shape)}: pass one "
            "label per example, as a non-empty (N,) tensor"
        )


class ClassifyTask:
    """Cross-entropy training on (x, y) batches; dev cross-entropy as the validation score.

    Args:
        x_train (Tensor[N, ...]): training examples, e.g. (N, 99, 32) log-mel clips.
        y_train (Tensor[N], int64): their labels.
        x_valid, y_valid: the held-out set scored by `validate`.
        batch_size: global batch (split across DDP ranks); the last batch of an epoch may be short.
        eval_batch_size: examples per forward pass when validating.
    """

    unit = "clip"

    def __init__(
        self,
        x_train: Tensor,
        y_train: Tensor,
        x_valid: Tensor,
        y_valid: Tensor,
        *,
        batch_size: int,
        eval_batch_size: int = 256,
    ) -> None:
        _check_pair("the training set", x_train, y_train)
        _check_pair("the validation set", x_valid, y_valid)
        if batch_size < 1:
            raise PrunekitError(f"batch_size={batch_size} must be >= 1: e.g. batch_size=100")
        self.x_train, self.y_train = x_train, y_train.long()
        self.x_valid, self.y_valid = x_valid, y_valid.long()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self._perm = torch.arange(x_train.shape[0])

    def __len__(self) -> int:
        return math.ceil(self.x_train.shape[0] / self.batch_size)

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        """Draw this epoch's example permutation (a function of seed and epoch); batches in order."""
        n = self.x_train.shape[0]
        if shuffle:
            gen = torch.Generator().manual_seed(seed * _SEED_STRIDE + epoch)
            self._perm = torch.randperm(n, generator=gen)
        else:
            self._perm = torch.arange(n)
        return list(range(len(self)))

    def batch(self, index: int, world: World) -> tuple[Tensor, Tensor]:
        """Batch `index` of the current epoch's permutation, this rank's share of it."""
        idx = self._perm[index * self.batch_size : (index + 1) * self.batch_size]
        idx = idx[world.rank :: world.size]
        return self.x_train[idx], self.y_train[idx]

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)  # model: (B, ...) -> (B, C)

    def units(self, batch: tuple[Tensor, Tensor], world: World) -> int:
        return batch[1].numel() * world.size

    def validate(self, model: nn.Module, world: World) -> float:
        return cross_entropy(model, self.x_valid, self.y_valid, self.eval_batch_size)
