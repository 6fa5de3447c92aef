"""Keyword classifier (`arch: kws`): a recurrent cell over log-mel frames, last state -> classes.

Seed 002's Google-12 setup: 99 frames x 32 log-mel features -> 12 classes. The cell is FastGRNN or
FastRNN (low rank optional, `prunekit.models.fastgrnn`) or a plain `nn.RNN` / `nn.GRU` / `nn.LSTM`
(the paper's baselines), so the Pruner, checkpoints and export treat them as ordinary modules.

The classifier starts as EdgeML's `FastTrainer` classifier (FC, FCbias ~ N(0, 1); `head_init`
"normal"). With `nn.Linear`'s default U(+-1/sqrt(H)) start ("torch"), the 10x smaller logits push
the low-rank quantSigm / quantTanh FastGRNN towards large, slowly-forgetting states, its
gradients explode within the dense stage (step ~226 of 540 on the Google-12 bench) and LSQ+Q ends
near 44 % instead of EdgeML's 92 %; EdgeML's own trainer collapses the same way with that head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.models.config_utils import check_choice, check_int, config_from_dict
from prunekit.models.fastgrnn import FastRNNLayer, check_nonlinearity
from prunekit.models.fastgrnn_lm import FAST_CELLS, build_fast_cell, check_rank

KWS_CELLS = (*FAST_CELLS, "rnn", "gru", "lstm")
TORCH_RNNS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
HEAD_INITS = ("normal", "torch")


@dataclass
class KWSConfig:
    """Architecture of a `KWSClassifier` (seed 002 Table 11, Google-12: 100 hidden, ranks 16/25)."""

    cell: str = "fastgrnn"
    n_in: int = 32
    n_classes: int = 12
    d_hidden: int = 100
    w_rank: int | None = None
    u_rank: int | None = None
    gate_nl: str = "sigmoid"
    update_nl: str = "tanh"
    head_init: str = "normal"  # EdgeML's classifier start; "torch": nn.Linear's default

    def __post_init__(self) -> None:
        check_choice("cell", self.cell, KWS_CELLS)
        check_int("n_in", self.n_in, 1, 32)
        check_int("n_classes", self.n_classes, 2, 12)
        check_int("d_hidden", self.d_hidden, 1, 100)
        check_rank("w_rank", self.w_rank)
        check_rank("u_rank", self.u_rank)
        check_nonlinearity("model.gate_nl", self.gate_nl)
        check_nonlinearity("model.update_nl", self.update_nl)
        check_choice("head_init", self.head_init, HEAD_INITS)
        if self.cell not in FAST_CELLS and (self.w_rank, self.u_rank) != (None, None):
            raise PrunekitError(
                f"model.w_rank / model.u_rank apply to fastgrnn and fastrnn only, not "
                f"cell={self.cell!r}: remove them"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KWSConfig:
        if "vocab_size" in data:
            raise PrunekitError(
                "model.arch='kws' is a keyword classifier, not a language model: train it with "
                "`prunekit bench kws`, or pick arch transformer, rnn or fastgrnn for an LM"
            )
        return config_from_dict(cls, data, arch="kws")


class KWSClassifier(nn.Module):
    """`forward(x (B, T, n_in)) -> logits (B, n_classes)` from the last hidden state."""

    def __init__(self, config: KWSConfig):
        super().__init__()
        c = config
        self.config = config
        if c.cell in FAST_CELLS:
            cell = build_fast_cell(
                c.cell, c.n_in, c.d_hidden, c.w_rank, c.u_rank, c.gate_nl, c.update_nl
            )
            self.rnn: nn.Module = FastRNNLayer(cell)
        else:
            self.rnn = TORCH_RNNS[c.cell](c.n_in, c.d_hidden, batch_first=True)
        self.head = nn.Linear(c.d_hidden, c.n_classes)
        init_head(self.head, c.head_init)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, n_in) features -> logits (B, n_classes)."""
        if x.dim() != 3 or x.size(-1) != self.config.n_in:
            raise PrunekitError(
                f"KWSClassifier expects features of shape (batch, frames, {self.config.n_in}), "
                f"got {tuple(x.shape)}: pass log-mel frames batch-first"
            )
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1])  # (B, n_classes)


@torch.no_grad()
def init_head(head: nn.Linear, how: str) -> None:
    """Start the classifier as EdgeML's FastTrainer does ("normal": weight and bias ~ N(0, 1)),
    or leave `nn.Linear`'s default ("torch")."""
    if how == "normal":
        head.weight.normal_(0.0, 1.0)
        head.bias.normal_(0.0, 1.0)
