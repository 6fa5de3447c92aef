"""`BiLinearRNN`: a bidirectional LSTM / GRU whose gate matmuls are compact layers.

The same recurrence as a bidirectional `nn.LSTM` / `nn.GRU` (gate order i, f, g, o / r, z, n;
`h_n` ordered layer 0 forward, layer 0 backward, layer 1 forward, ...), with each direction's
input and recurrent matmuls as submodules (`ih[l]`, `hh[l]`, `ih_reverse[l]`, `hh_reverse[l]`:
DenseLinear, LowRankLinear, SparseLinear, Int8...). It takes a padded tensor or a
`PackedSequence` (then every sequence's backward pass starts at its own last frame, as torch's
does) and returns the same kind. The input projection of all time steps is one call per
direction; the recurrent one runs per step. Inference only: dropout is not applied.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export.linear_rnn import _ELEMENTWISE, GATES, LinearRNN, _gru_cell, _lstm_cell
from prunekit.models.rnn_lm import RNNState


class BiLinearRNN(nn.Module):
    """Multi-layer bidirectional LSTM/GRU built from per-layer, per-direction gate layers."""

    bidirectional = True
    proj_size = 0
    bias = True

    def __init__(
        self, mode: str, input_size: int, hidden_size: int, ih: list[nn.Module],
        hh: list[nn.Module], ih_reverse: list[nn.Module], hh_reverse: list[nn.Module], *,
        batch_first: bool = False, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        """Args: mode "LSTM" / "GRU"; sizes; per layer the forward and backward gate layers
        (layer 0 reads input_size features, later ones 2 * hidden_size); batch_first, dropout."""
        super().__init__()
        n = len(ih)
        if mode not in GATES or not n or {len(hh), len(ih_reverse), len(hh_reverse)} != {n}:
            raise PrunekitError(
                f"BiLinearRNN needs mode 'LSTM' or 'GRU' and four gate layers per RNN layer, got "
                f"mode={mode!r} and {n}, {len(hh)}, {len(ih_reverse)}, {len(hh_reverse)} layers"
            )
        self.mode, self.input_size, self.hidden_size = mode, int(input_size), int(hidden_size)
        self.num_layers, self.batch_first, self.dropout = n, batch_first, float(dropout)
        self.ih, self.hh = nn.ModuleList(ih), nn.ModuleList(hh)
        self.ih_reverse, self.hh_reverse = nn.ModuleList(ih_reverse), nn.ModuleList(hh_reverse)

    @classmethod
    def from_directions(cls, fwd: LinearRNN, bwd: LinearRNN, input_size: int) -> BiLinearRNN:
        """Pair the layers of a forward and a backward `LinearRNN` (same mode and sizes)."""
        return cls(
            fwd.mode, input_size, fwd.hidden_size, list(fwd.ih), list(fwd.hh), list(bwd.ih),
            list(bwd.hh), batch_first=fwd.batch_first, dropout=fwd.dropout,
        )  # fmt: skip

    def _run(
        self, ih: nn.Module, hh: nn.Module, seq: Tensor, lengths: Tensor, h: Tensor, c: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One direction of one layer over seq (B, T, in); steps at t >= length keep the state."""
        gi = ih(seq)  # (B, T, G*H)
        outs = []
        for t in range(seq.shape[1]):
            gh = hh(h)  # (B, G*H)
            if self.mode == "LSTM":
                h_new, c_new = _lstm_cell(gi[:, t], gh, c)
            else:
                h_new, c_new = _gru_cell(gi[:, t], gh, h), c
            alive = (t < lengths)[:, None]  # (B, 1)
            h, c = torch.where(alive, h_new, h), torch.where(alive, c_new, c)
            outs.append(h_new * alive)
        return torch.stack(outs, dim=1), h, c  # (B, T, H), (B, H), (B, H)

    def forward(
        self, x: Tensor | PackedSequence, hx: RNNState | None = None
    ) -> tuple[Tensor | PackedSequence, RNNState]:
        """x (B, T, in) if batch_first else (T, B, in), or a PackedSequence; hx as nn.LSTM /
        nn.GRU ((2 L, B, H) tensors); returns (output with 2 H features, state)."""
        packed = isinstance(x, PackedSequence)
        if packed:
            seq, lengths = pad_packed_sequence(x, batch_first=True)  # (B, T, in), (B,)
        else:
            if x.dim() != 3:
                raise PrunekitError(f"BiLinearRNN takes a 3-D input, got shape {tuple(x.shape)}")
            seq = x if self.batch_first else x.transpose(0, 1)
            lengths = torch.full((seq.shape[0],), seq.shape[1], dtype=torch.long)
        B, T = seq.shape[0], seq.shape[1]
        lengths = lengths.to(seq.device)
        steps = torch.arange(T, device=seq.device)[None, :]  # (1, T)
        rev = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (B, T)
        lstm = self.mode == "LSTM"
        zeros = seq.new_zeros(2 * self.num_layers, B, self.hidden_size)
        h0 = zeros if hx is None else (hx[0] if lstm else hx)
        c0 = zeros if hx is None or not lstm else hx[1]
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            i = 2 * layer
            fwd, hf, cf = self._run(self.ih[layer], self.hh[layer], seq, lengths, h0[i], c0[i])
            flipped = _gather_time(seq, rev)
            bwd, hb, cb = self._run(
                self.ih_reverse[layer], self.hh_reverse[layer], flipped, lengths, h0[i + 1],
                c0[i + 1],
            )  # fmt: skip
            seq = torch.cat([fwd, _gather_time(bwd, rev)], dim=-1)  # (B, T, 2H)
            h_n += [hf, hb]
            c_n += [cf, cb]
        state = (torch.stack(h_n), torch.stack(c_n)) if lstm else torch.stack(h_n)
        if packed:
            out = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
            return out, state
        return (seq if self.batch_first else seq.transpose(0, 1)), state

    def flops_per_token(self, context_len: int = 1) -> int:
        """Gate layers of both directions plus their gate arithmetic (as nn.LSTM / nn.GRU)."""
        layers = [*self.ih, *self.hh, *self.ih_reverse, *self.hh_reverse]
        matmuls = sum(flops_per_token(m, context_len) for m in layers)
        return matmuls + 2 * _ELEMENTWISE[self.mode] * self.hidden_size * self.num_layers

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, batch_first={self.batch_first}, bidirectional=True"
        )


def _gather_time(x: Tensor, index: Tensor) -> Tensor:
    """x (B, T, D) reordered in time per sequence: out[b, t] = x[b, index[b, t]]."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def save_record(m: BiLinearRNN) -> tuple[dict, dict]:
    """The compact format's record of a BiLinearRNN (a container: its gate layers have their own)."""
    meta = {"mode": m.mode, "input_size": m.input_size, "hidden_size": m.hidden_size}
    meta.update(num_layers=m.num_layers, batch_first=m.batch_first, dropout=m.dropout)
    return meta, {}


def build_record(meta: dict, tensors: dict, placeholder: type[nn.Module]) -> BiLinearRNN:
    """A BiLinearRNN with `placeholder()` gate layers, which their own records replace."""
    n = meta["num_layers"]
    slots = [[placeholder() for _ in range(n)] for _ in range(4)]
    return BiLinearRNN(
        meta["mode"], meta["input_size"], meta["hidden_size"], *slots,
        batch_first=meta["batch_first"], dropout=meta["dropout"],
    )  # fmt: skip
