"""FastGRNN / FastRNN language model (`arch: fastgrnn`): embedding -> one fast cell -> output layer.

The paper's PTB row (seed 002 Table 11: 256 hidden, ranks 64/64, sigmoid gate) beside the LSTM LM.
Same interface as `RNNLM`: `forward(idx)`, `init_state`, `decode_step`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.models.config_utils import check_choice, check_int, check_prob, config_from_dict
from prunekit.models.fastgrnn import FastGRNNCell, FastRNNCell, FastRNNLayer, check_nonlinearity

FAST_CELLS = ("fastgrnn", "fastrnn")


def check_rank(name: str, value: Any) -> None:
    """Raise unless `value` is None (full rank) or an int >= 1."""
    if value is not None:
        check_int(name, value, 1, 16)


def build_fast_cell(
    cell: str,
    d_in: int,
    d_hidden: int,
    w_rank: int | None,
    u_rank: int | None,
    gate_nl: str,
    update_nl: str,
) -> FastGRNNCell | FastRNNCell:
    """A FastGRNN or FastRNN cell (FastRNN has no gate, so `gate_nl` is unused there)."""
    if cell == "fastgrnn":
        return FastGRNNCell(
            d_in, d_hidden, w_rank=w_rank, u_rank=u_rank, gate_nl=gate_nl, update_nl=update_nl
        )
    return FastRNNCell(d_in, d_hidden, w_rank=w_rank, u_rank=u_rank, update_nl=update_nl)


@dataclass
class FastGRNNLMConfig:
    """Architecture of a `FastGRNNLM` (ranks None = full-rank W / U)."""

    vocab_size: int
    cell: str = "fastgrnn"
    d_embed: int = 256
    d_hidden: int = 256
    w_rank: int | None = 64
    u_rank: int | None = 64
    gate_nl: str = "sigmoid"
    update_nl: str = "tanh"
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, 1, 6300)
        check_choice("cell", self.cell, FAST_CELLS)
        check_int("d_embed", self.d_embed, 1, 256)
        check_int("d_hidden", self.d_hidden, 1, 256)
        check_rank("w_rank", self.w_rank)
        check_rank("u_rank", self.u_rank)
        check_nonlinearity("model.gate_nl", self.gate_nl)
        check_nonlinearity("model.update_nl", self.update_nl)
        self.dropout = check_prob("dropout", self.dropout, 0.2)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FastGRNNLMConfig:
        return config_from_dict(cls, data, arch="fastgrnn")


class FastGRNNLM(nn.Module):
    """FastGRNN language model: `forward(idx (B, T)) -> logits (B, T, V)` from a zero state."""

    def __init__(self, config: FastGRNNLMConfig):
        super().__init__()
        c = config
        self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_embed)
        self.drop = nn.Dropout(c.dropout)
        cell = build_fast_cell(
            c.cell, c.d_embed, c.d_hidden, c.w_rank, c.u_rank, c.gate_nl, c.update_nl
        )
        self.rnn = FastRNNLayer(cell)
        self.lm_head = nn.Linear(c.d_hidden, c.vocab_size)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)
        nn.init.zeros_(self.lm_head.bias)

    def forward(self, idx: Tensor) -> Tensor:
        """idx: (B, T) token ids -> logits (B, T, V)."""
        logits, _ = self._run(idx, None)
        return logits

    def init_state(self, batch_size: int) -> Tensor:
        """Zero state (B, d_hidden)."""
        w = self.lm_head.weight
        return torch.zeros(batch_size, self.rnn.hidden_size, device=w.device, dtype=w.dtype)

    def decode_step(self, idx: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Feed the next tokens idx (B, T_new); returns logits (B, T_new, V) and the new state."""
        if idx.dim() != 2 or idx.size(0) != state.size(0):
            raise PrunekitError(
                f"decode_step got token ids of shape {tuple(idx.shape)} for a state of batch size "
                f"{state.size(0)}: pass a (batch_size, T_new) tensor or call init_state again"
            )
        return self._run(idx, state)

    def _run(self, idx: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self.drop(self.embed(idx))  # (B, T, d_embed)
        out, state = self.rnn(x, state)  # (B, T, d_hidden), (B, d_hidden)
        return self.lm_head(self.drop(out)), state  # (B, T, V)
