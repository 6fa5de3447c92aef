"""Classification metrics: predictions, accuracy and mean cross-entropy over a tensor of examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def logits_of(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """Logits (N, C) of `model` (eval mode) on examples x (N, ...), `batch_size` at a time."""
    was_training = model.training
    model.eval()
    try:
        parts = [model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts)  # (N, C)


def accuracy_from_logits(logits: Tensor, y: Tensor) -> float:
    """Fraction of rows of logits (N, C) whose argmax equals the label y (N,)."""
    return float((logits.argmax(dim=-1) == y).float().mean())


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` on examples x (N, ...) with labels y (N,)."""
    return accuracy_from_logits(logits_of(model, x, batch_size), y)


def cross_entropy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Mean cross-entropy (nats) of `model` on examples x (N, ...) with labels y (N,)."""
    return float(F.cross_entropy(logits_of(model, x, batch_size).float(), y))
