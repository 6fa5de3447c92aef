"""Tiny recurrent models and a sequence task for the low-rank, Narang and compact-RNN tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.train.distributed import World


class Stack(nn.Module):
    """Linear -> multi-layer GRU/LSTM -> Linear: the acoustic model's shape at toy size.

    forward(x (B, T, n_in)) -> logits (B, T, n_out).
    """

    def __init__(
        self, cell: str = "gru", n_in: int = 6, d: int = 12, hidden: int = 10, n_out: int = 5,
        layers: int = 2, bidirectional: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.input = nn.Linear(n_in, d)
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(d, hidden, num_layers=layers, batch_first=True,
                           bidirectional=bidirectional)  # fmt: skip
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_out)

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.rnn(torch.tanh(self.input(x)))  # (B, T, H)
        return self.head(y)  # (B, T, n_out)


class SeqTask:
    """Label each frame with the argmax of a fixed random projection of a running input sum:
    a learnable sequence task with a cross-entropy loss, 6 fixed batches per epoch."""

    unit = "frame"

    def __init__(self, n_in: int = 6, n_out: int = 5, batches: int = 6, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batches, 4, 7, n_in, generator=g)  # (batches, B, T, n_in)
        proj = torch.randn(n_in, n_out, generator=g)
        self.y = (self.x.cumsum(dim=2) @ proj).argmax(-1)  # (batches, B, T)
        self.n = batches

    def __len__(self) -> int:
        return self.n

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        if not shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def batch(self, index: int, world: World) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

    def units(self, batch: tuple[Tensor, Tensor], world: World) -> int:
        return batch[1].numel()

    def validate(self, model: nn.Module, world: World) -> float:
        was = model.training
        model.eval()
        with torch.no_grad():
            loss = self.loss(model, (self.x.flatten(0, 1), self.y.flatten(0, 1))).item()
        model.train(was)
        return loss
