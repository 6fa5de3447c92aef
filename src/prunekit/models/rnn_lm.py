"""LSTM / GRU language model: embedding -> multi-layer RNN -> (projection) -> output layer.

Sizes are read from the modules at runtime (`self.rnn.hidden_size`, ...), not from the config,
so a compact copy with fewer hidden units still runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.models.config_utils import (
    check_bool,
    check_choice,
    check_int,
    check_prob,
    config_from_dict,
)

CELLS = ("lstm", "gru")

# LSTM state is (h, c), GRU state is h; each (n_layer, B, d_hidden).
RNNState = Tensor | tuple[Tensor, Tensor]


@dataclass
class RNNLMConfig:
    """Architecture of an `RNNLM`."""

    vocab_size: int
    cell: str = "lstm"
    d_embed: int = 512
    d_hidden: int = 512
    n_layer: int = 2
    dropout: float = 0.2
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, 1, 6300)
        check_choice("cell", self.cell, CELLS)
        check_int("d_embed", self.d_embed, 1, 512)
        check_int("d_hidden", self.d_hidden, 1, 512)
        check_int("n_layer", self.n_layer, 1, 2)
        self.dropout = check_prob("dropout", self.dropout, 0.2)
        check_bool("tie_embeddings", self.tie_embeddings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RNNLMConfig:
        return config_from_dict(cls, data, arch="rnn")


class RNNLM(nn.Module):
    """Recurrent language model: `forward(idx (B, T)) -> logits (B, T, V)` from a zero state.

    With `tie_embeddings`, the output layer shares `embed.weight`; if d_hidden != d_embed a
    bias-free `proj` maps the RNN output to d_embed first.
    """

    def __init__(self, config: RNNLMConfig):
        super().__init__()
        c = config
        self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_embed)
        self.drop = nn.Dropout(c.dropout)
        rnn_cls = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            c.d_embed,
            c.d_hidden,
            num_layers=c.n_layer,
            batch_first=True,
            dropout=c.dropout if c.n_layer > 1 else 0.0,
        )
        needs_proj = c.tie_embeddings and c.d_hidden != c.d_embed
        self.proj = nn.Linear(c.d_hidden, c.d_embed, bias=False) if needs_proj else None
        d_out = c.d_embed if c.tie_embeddings else c.d_hidden
        self.lm_head = nn.Linear(d_out, c.vocab_size)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)
        nn.init.zeros_(self.lm_head.bias)
        if c.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def forward(self, idx: Tensor) -> Tensor:
        """idx: (B, T) token ids -> logits (B, T, V)."""
        logits, _ = self._run(idx, None)
        return logits

    def init_state(self, batch_size: int) -> RNNState:
        """Zero state for `batch_size` sequences, sized from the (possibly compressed) RNN."""
        rnn = self.rnn
        w = next(rnn.parameters())
        n = rnn.num_layers * (2 if rnn.bidirectional else 1)
        d_h = getattr(rnn, "proj_size", 0) or rnn.hidden_size
        h = torch.zeros(n, batch_size, d_h, device=w.device, dtype=w.dtype)
        if isinstance(rnn, nn.LSTM):
            c = torch.zeros(n, batch_size, rnn.hidden_size, device=w.device, dtype=w.dtype)
            return (h, c)
        return h

    def decode_step(self, idx: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """Feed the next tokens idx (B, T_new); returns logits (B, T_new, V) and the new state."""
        batch = (state[0] if isinstance(state, tuple) else state).size(1)
        if idx.dim() != 2 or idx.size(0) != batch:
            raise PrunekitError(
                f"decode_step got token ids of shape {tuple(idx.shape)} for a state of batch size "
                f"{batch}: pass a (batch_size, T_new) tensor or call init_state again"
            )
        return self._run(idx, state)

    def _run(self, idx: Tensor, state: RNNState | None) -> tuple[Tensor, RNNState]:
        x = self.drop(self.embed(idx))  # (B, T, d_embed)
        out, state = self.rnn(x, state)  # (B, T, d_hidden)
        out = self.drop(out)
        if self.proj is not None:
            out = self.proj(out)  # (B, T, d_embed)
        return self.lm_head(out), state  # (B, T, V)
