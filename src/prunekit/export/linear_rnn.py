"""An LSTM / GRU whose gate matmuls are compact linear layers (CSR, dense, int8), and its LM root.

`LinearRNN` runs the same recurrence as a unidirectional `nn.LSTM` / `nn.GRU` (gate order i, f, g, o
and r, z, n; `batch_first` as configured), but each layer's input and recurrent matmuls are
submodules `ih[l]` ((..., in) -> (..., G*H), bias b_ih) and `hh[l]` ((..., H) -> (..., G*H),
bias b_hh). With CSR layers this is what makes an unstructured-pruned LSTM faster: torch's fused
RNN kernels are dense only. The input projection of all time steps runs as one call; the
recurrent one runs per step.

`CompactRNNLM` is an `RNNLM` whose `init_state` also works when `rnn` is a `LinearRNN` or a
dynamic-int8 RNN (neither has fp32 `nn.RNNBase` parameters).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export.layers import DenseLinear, SparseLinear
from prunekit.models.rnn_lm import RNNLM, RNNState

GATES = {"LSTM": 4, "GRU": 3}
_ELEMENTWISE = {"LSTM": 9, "GRU": 8}  # as prunekit.eval.flops counts nn.LSTM / nn.GRU


class LinearRNN(nn.Module):
    """Multi-layer unidirectional LSTM/GRU built from per-layer gate layers `ih[l]`, `hh[l]`."""

    bidirectional = False
    proj_size = 0
    bias = True

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        ih: list[nn.Module],
        hh: list[nn.Module],
        *,
        batch_first: bool = False,
        dropout: float = 0.0,
    ):
        """Args: mode "LSTM" or "GRU"; sizes; one ih and one hh layer per RNN layer (ih[0] reads
        input_size features, later ones hidden_size); batch_first and dropout as nn.LSTM (dropout
        is kept for the record: this module is for inference and never applies it)."""
        super().__init__()
        if mode not in GATES or len(ih) != len(hh) or not ih:
            raise PrunekitError(
                f"LinearRNN needs mode 'LSTM' or 'GRU' and one ih and hh layer per RNN layer, "
                f"got mode={mode!r}, {len(ih)} ih and {len(hh)} hh layers"
            )
        self.mode, self.input_size, self.hidden_size = mode, int(input_size), int(hidden_size)
        self.num_layers, self.batch_first, self.dropout = len(ih), batch_first, float(dropout)
        self.ih, self.hh = nn.ModuleList(ih), nn.ModuleList(hh)

    @classmethod
    def from_rnn(cls, rnn: nn.LSTM | nn.GRU, *, sparse: bool = True) -> LinearRNN:
        """Copy a unidirectional nn.LSTM / nn.GRU (no proj_size); gate layers in CSR when `sparse`
        (each weight that has zeros), DenseLinear otherwise.

        Raises:
            PrunekitError: a bidirectional RNN, an LSTM with proj_size, or one without bias.
        """
        if rnn.bidirectional or getattr(rnn, "proj_size", 0) or not rnn.bias:
            raise PrunekitError(
                "LinearRNN supports unidirectional LSTM/GRU with biases and no proj_size: "
                "keep this RNN dense"
            )
        ih, hh = [], []
        for layer in range(rnn.num_layers):
            for names, out in (("ih", ih), ("hh", hh)):
                w = getattr(rnn, f"weight_{names}_l{layer}").detach()
                b = getattr(rnn, f"bias_{names}_l{layer}").detach()
                lin = DenseLinear(w, b)
                has_zeros = bool((w == 0).any())
                out.append(SparseLinear.from_linear(lin) if sparse and has_zeros else lin)
        return cls(
            rnn.mode, rnn.input_size, rnn.hidden_size, ih, hh,
            batch_first=rnn.batch_first, dropout=rnn.dropout,
        )  # fmt: skip

    def to_dense_rnn(self) -> nn.LSTM | nn.GRU:
        """The equivalent fp32 nn.LSTM / nn.GRU (dense weights, zeros kept)."""
        cls = nn.LSTM if self.mode == "LSTM" else nn.GRU
        rnn = cls(
            self.input_size, self.hidden_size, num_layers=self.num_layers,
            batch_first=self.batch_first, dropout=self.dropout,
        )  # fmt: skip
        with torch.no_grad():
            for layer in range(self.num_layers):
                for name, m in (("ih", self.ih[layer]), ("hh", self.hh[layer])):
                    getattr(rnn, f"weight_{name}_l{layer}").copy_(_dense_weight(m))
                    getattr(rnn, f"bias_{name}_l{layer}").copy_(_dense_bias(m))
        return rnn.eval()

    def _zeros(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros(self.num_layers, batch, self.hidden_size)

    def forward(self, x: Tensor, hx: RNNState | None = None) -> tuple[Tensor, RNNState]:
        """x (B, T, in) if batch_first else (T, B, in); hx as nn.LSTM ((h, c), each (L, B, H)) or
        nn.GRU (h); returns (output (B, T, H) or (T, B, H), new state)."""
        if x.dim() != 3:
            raise PrunekitError(f"LinearRNN takes a 3-D input, got shape {tuple(x.shape)}")
        seq = x if self.batch_first else x.transpose(0, 1)  # (B, T, in)
        B, T = seq.shape[0], seq.shape[1]
        lstm = self.mode == "LSTM"
        if hx is None:
            h0 = self._zeros(B, seq)
            hx = (h0, torch.zeros_like(h0)) if lstm else h0
        h_all = hx[0] if lstm else hx
        c_all = hx[1] if lstm else None
        h_out, c_out = [], []
        for layer in range(self.num_layers):
            gi = self.ih[layer](seq)  # (B, T, G*H)
            h = h_all[layer]  # (B, H)
            c = c_all[layer] if lstm else None
            outs = []
            for t in range(T):
                gh = self.hh[layer](h)  # (B, G*H)
                if lstm:
                    h, c = _lstm_cell(gi[:, t], gh, c)
                else:
                    h = _gru_cell(gi[:, t], gh, h)
                outs.append(h)
            seq = torch.stack(outs, dim=1)  # (B, T, H)
            h_out.append(h)
            c_out.append(c)
        out = seq if self.batch_first else seq.transpose(0, 1)
        h_n = torch.stack(h_out)  # (L, B, H)
        return out, ((h_n, torch.stack(c_out)) if lstm else h_n)

    def flops_per_token(self, context_len: int = 1) -> int:
        """Gate layers' FLOPs plus the gate arithmetic (same count as nn.LSTM / nn.GRU)."""
        layers = sum(flops_per_token(m, context_len) for m in [*self.ih, *self.hh])
        return layers + _ELEMENTWISE[self.mode] * self.hidden_size * self.num_layers

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, batch_first={self.batch_first}"
        )


def _lstm_cell(gi: Tensor, gh: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """gi, gh (B, 4H) pre-activations; c (B, H) -> (h, c), each (B, H)."""
    i, f, g, o = (gi + gh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_cell(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """gi, gh (B, 3H) pre-activations (gh includes b_hh); h (B, H) -> new h (B, H)."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _dense_weight(m: nn.Module) -> Tensor:
    w = getattr(m, "weight", None)
    if callable(w):  # torch's dynamic int8 Linear: weight() is a quantized tensor
        return w().dequantize()
    return w.detach()


def _dense_bias(m: nn.Module) -> Tensor:
    b = getattr(m, "bias", None)
    if callable(b):
        b = b()
    return b.detach()


class CompactRNNLM(RNNLM):
    """An `RNNLM` whose `rnn` may be a `LinearRNN` or a dynamic-int8 LSTM/GRU (same forward)."""

    def init_state(self, batch_size: int) -> RNNState:
        """Zero state for `batch_size` sequences: (h, c) for an LSTM, h for a GRU, (L, B, H)."""
        rnn = self.rnn
        if isinstance(rnn, nn.RNNBase):
            return super().init_state(batch_size)
        like = next(self.embed.parameters())
        n = rnn.num_layers * (2 if rnn.bidirectional else 1)
        h = like.new_zeros(n, batch_size, rnn.hidden_size)
        return (h, torch.zeros_like(h)) if rnn.mode == "LSTM" else h
