"""CTC acoustic model: convolutional subsampling (x4 in time) -> LSTM/GRU layers -> Linear.

    feats (B, T, F) -> normalize -> 2 x [Conv2d 3x3 stride 2 over (time, mel), ReLU]
        -> stack of (1 + lookahead) frames -> Linear -> RNN (bidirectional, or
        unidirectional when streaming) -> Linear -> log-softmax over `CharUnits`

The convolutions are causal in time (zero padding on the left only), so an output frame t sees
input frames [4t - 6, 4t]; the Linear after them reads frames t .. t + lookahead of the conv
output, which is the model's only look into the future: 4 * lookahead input frames (40 ms each).
That makes the streaming variant exact frame by frame (`step`), and makes padding harmless: an
utterance's valid outputs never read its batch's padding (the bidirectional RNN runs packed).

Feature normalization (a global per-mel mean and standard deviation of the training set) is part
of the model as buffers, so a checkpoint carries it; `set_feature_stats` fills them in.

Sizes are read from the modules at run time, not from the config, so a compact copy with fewer
hidden units (`prunekit.export.compact`) still runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from prunekit.asr.units import CharUnits
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.models.config_utils import (
    check_bool,
    check_choice,
    check_int,
    check_prob,
    config_from_dict,
)

CELLS = ("gru", "lstm")
SUBSAMPLING = 4  # two stride-2 convolutions
KERNEL = 3
DEFAULT_STREAMING_LOOKAHEAD = 2  # conv-output frames (80 ms)

RNNState = Tensor | tuple[Tensor, Tensor]


@dataclass
class AcousticConfig:
    """Architecture of a `CTCAcousticModel`.

    Attributes:
        n_mels: input features per frame F.
        n_units: output units V (blank included), `CharUnits().size` by default.
        conv_channels: channels of both subsampling convolutions.
        d_input: width of the Linear between the convolutions and the RNN.
        cell: "gru" or "lstm".
        d_hidden: hidden units per RNN layer and direction.
        n_layer: RNN layers.
        dropout: dropout after the front-end and between RNN layers.
        streaming: unidirectional RNN (for incremental `step` decoding) instead of bidirectional.
        lookahead: conv-output frames (40 ms each) the Linear before the RNN reads ahead; None
            means 2 when streaming and 0 otherwise.
    """

    n_mels: int = 80
    n_units: int = field(default_factory=lambda: CharUnits().size)
    conv_channels: int = 32
    d_input: int = 256
    cell: str = "gru"
    d_hidden: int = 256
    n_layer: int = 3
    dropout: float = 0.1
    streaming: bool = False
    lookahead: int | None = None

    def __post_init__(self) -> None:
        check_int("n_mels", self.n_mels, 1, 80)
        check_int("n_units", self.n_units, 2, CharUnits().size)
        check_int("conv_channels", self.conv_channels, 1, 32)
        check_int("d_input", self.d_input, 1, 256)
        check_choice("cell", self.cell, CELLS)
        check_int("d_hidden", self.d_hidden, 1, 256)
        check_int("n_layer", self.n_layer, 1, 3)
        self.dropout = check_prob("dropout", self.dropout, 0.1)
        check_bool("streaming", self.streaming)
        if self.lookahead is not None:
            check_int("lookahead", self.lookahead, 0, DEFAULT_STREAMING_LOOKAHEAD)

    @property
    def frames_ahead(self) -> int:
        """The lookahead in conv-output frames, with the default resolved."""
        if self.lookahead is not None:
            return self.lookahead
        return DEFAULT_STREAMING_LOOKAHEAD if self.streaming else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AcousticConfig:
        return config_from_dict(cls, data, arch="ctc")


def out_lengths(lengths: Tensor) -> Tensor:
    """Output frames of inputs with `lengths` (B,) frames: ceil(T / 4)."""
    return (lengths + SUBSAMPLING - 1) // SUBSAMPLING


class Subsampling(nn.Module):
    """Two causal stride-2 Conv2d over (time, mel) with ReLU: (B, T, F) -> (B, ceil(T/4), C*F')."""

    def __init__(self, n_mels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, KERNEL, stride=2, padding=(0, 1))
        self.conv2 = nn.Conv2d(channels, channels, KERNEL, stride=2, padding=(0, 1))
        self.n_mels = n_mels

    @property
    def out_features(self) -> int:
        """C * F' where F' = ceil(ceil(F / 2) / 2)."""
        f = (self.n_mels + 1) // 2
        return self.conv2.out_channels * ((f + 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, F) -> (B, ceil(T / 4), C * F'); zero padding of KERNEL - 1 frames on the left."""
        h = x.unsqueeze(1)  # (B, 1, T, F)
        h = F.relu(self.conv1(F.pad(h, (0, 0, KERNEL - 1, 0))))  # (B, C, ceil(T/2), F/2)
        h = F.relu(self.conv2(F.pad(h, (0, 0, KERNEL - 1, 0))))  # (B, C, ceil(T/4), F/4)
        return h.permute(0, 2, 1, 3).flatten(2)  # (B, T', C*F')

    def flops_per_token(self, context_len: int) -> int:
        """Multiply-adds (x2) of both convolutions per output frame (2 conv1 frames feed one)."""
        f1 = (self.n_mels + 1) // 2
        f2 = (f1 + 1) // 2
        c1, c2 = self.conv1, self.conv2
        k = KERNEL * KERNEL
        conv1 = 2 * f1 * c1.out_channels * (2 * k * c1.in_channels + 1)
        conv2 = f2 * c2.out_channels * (2 * k * c2.in_channels + 1)
        return conv1 + conv2


def stack_ahead(h: Tensor, ahead: int) -> Tensor:
    """(B, T', D) -> (B, T', (1 + ahead) * D): frame t next to frames t+1 .. t+ahead (zeros past
    the end; frames at or past an utterance's length must already be zero)."""
    if ahead == 0:
        return h
    T = h.shape[1]
    padded = F.pad(h, (0, 0, 0, ahead))  # (B, T' + ahead, D)
    return torch.cat([padded[:, i : i + T] for i in range(ahead + 1)], dim=-1)


@dataclass
class StreamState:
    """What `CTCAcousticModel.step` carries between calls (B streams in lockstep).

    Attributes:
        conv1_in: (B, 1, n, F) normalized input frames conv1 has not consumed (starts as the
            left padding).
        conv2_in: (B, C, n, F/2) conv1 outputs conv2 has not consumed.
        ahead: (B, n, D) conv-output frames waiting for their lookahead.
        rnn: the RNN state (None before the first RNN step).
        frames_in: input frames received so far.
    """

    conv1_in: Tensor
    conv2_in: Tensor
    ahead: Tensor
    rnn: RNNState | None = None
    frames_in: int = 0


class CTCAcousticModel(nn.Module):
    """CTC acoustic model (see the module docstring).

    `forward(feats (B, T, F), lengths (B,)) -> (log_probs (B, T', V), out_lengths (B,))` with
    T' = ceil(T / 4); frames at or past `out_lengths` are padding (CTC ignores them).
    """

    def __init__(self, config: AcousticConfig) -> None:
        super().__init__()
        c = self.config = config
        self.register_buffer("feat_mean", torch.zeros(c.n_mels))
        self.register_buffer("feat_std", torch.ones(c.n_mels))
        self.subsample = Subsampling(c.n_mels, c.conv_channels)
        self.frames_ahead = c.frames_ahead
        self.input = nn.Linear(self.subsample.out_features * (1 + self.frames_ahead), c.d_input)
        self.drop = nn.Dropout(c.dropout)
        rnn_cls = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            c.d_input,
            c.d_hidden,
            num_layers=c.n_layer,
            batch_first=True,
            dropout=c.dropout if c.n_layer > 1 else 0.0,
            bidirectional=not c.streaming,
        )
        self.head = nn.Linear(c.d_hidden * (1 if c.streaming else 2), c.n_units)

    def set_feature_stats(self, mean: Tensor, std: Tensor) -> None:
        """Store the training set's per-mel mean (F,) and standard deviation (F,)."""
        if mean.shape != self.feat_mean.shape or std.shape != self.feat_std.shape:
            raise PrunekitError(
                f"feature statistics of shape {tuple(mean.shape)} do not fit a model with "
                f"n_mels={self.feat_mean.numel()}: compute them on features with that many mels"
            )
        with torch.no_grad():
            self.feat_mean.copy_(mean)
            self.feat_std.copy_(std.clamp_min(1e-5))

    def normalize(self, feats: Tensor) -> Tensor:
        """(..., F) log-mels -> zero mean, unit variance per mel (training-set statistics)."""
        return (feats - self.feat_mean) / self.feat_std

    def _check(self, feats: Tensor, lengths: Tensor | None = None) -> None:
        n_mels = self.feat_mean.numel()
        if feats.dim() != 3 or feats.shape[-1] != n_mels:
            raise PrunekitError(
                f"acoustic model got features of shape {tuple(feats.shape)}: pass (batch, "
                f"frames, {n_mels}) log-mel features, as the model was built for n_mels={n_mels}"
            )
        if lengths is not None and (
            lengths.shape != feats.shape[:1]
            or bool((lengths < 1).any())
            or bool((lengths > feats.shape[1]).any())
        ):
            raise PrunekitError(
                f"acoustic model got lengths {lengths.tolist()[:8]} for features of shape "
                f"{tuple(feats.shape)}: pass one length in [1, frames] per utterance"
            )

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """feats (B, T, F), lengths (B,) -> log_probs (B, T', V), out_lengths (B,)."""
        self._check(feats, lengths)
        out_len = out_lengths(lengths.to(torch.int64))
        h = self.subsample(self.normalize(feats))  # (B, T', C*F')
        valid = torch.arange(h.shape[1], device=h.device) < out_len[:, None]  # (B, T')
        h = stack_ahead(h * valid[..., None], self.frames_ahead)  # (B, T', (1+k)*C*F')
        x = self.drop(self.input(h))  # (B, T', d_input)
        if self.rnn.bidirectional:
            packed = pack_padded_sequence(x, out_len.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = self.rnn(packed)
            y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        else:
            y, _ = self.rnn(x)  # causal: padding after an utterance cannot reach its frames
        logits = self.head(self.drop(y))  # (B, T', V)
        return logits.log_softmax(dim=-1), out_len

    # --- streaming -------------------------------------------------------------------------

    def init_stream(self, batch_size: int = 1) -> StreamState:
        """The state before the first `step` of `batch_size` streams (streaming models only)."""
        if self.rnn.bidirectional:
            raise PrunekitError(
                "step() needs a streaming acoustic model: build it with model.streaming=true "
                "(a bidirectional RNN needs the whole utterance)"
            )
        w = self.feat_mean
        n_mels, f1 = w.numel(), (w.numel() + 1) // 2
        C = self.subsample.conv1.out_channels
        pad = KERNEL - 1
        return StreamState(
            conv1_in=w.new_zeros(batch_size, 1, pad, n_mels),
            conv2_in=w.new_zeros(batch_size, C, pad, f1),
            ahead=w.new_zeros(batch_size, 0, self.subsample.out_features),
        )

    @staticmethod
    def _stream_conv(conv: nn.Conv2d, pending: Tensor, new: Tensor) -> tuple[Tensor, Tensor]:
        """Run stride-2 `conv` over every complete window of pending + new frames (dim 2).

        Returns (ReLU outputs, frames still pending)."""
        x = torch.cat([pending, new], dim=2)  # (B, C_in, n, F)
        n_out = (x.shape[2] - KERNEL) // 2 + 1 if x.shape[2] >= KERNEL else 0
        if n_out == 0:
            width = (x.shape[3] + 1) // 2  # mel padding 1, stride 2
            return x.new_zeros(x.shape[0], conv.out_channels, 0, width), x
        y = F.relu(conv(x[:, :, : (n_out - 1) * 2 + KERNEL]))  # (B, C_out, n_out, F')
        return y, x[:, :, n_out * 2 :]

    @torch.no_grad()
    def step(
        self, feats: Tensor, state: StreamState, *, final: bool = False
    ) -> tuple[Tensor, StreamState]:
        """Feed the next feature frames of each stream; return the log-probs they complete.

        Args:
            feats (Tensor[B, n, F]): the next n >= 0 frames (e.g. one 10 ms frame).
            state: from `init_stream` or the previous call (not modified).
            final: the utterance ends here: flush the lookahead.

        Returns:
            (log_probs (B, m, V), new state): m output frames, in order; over a whole utterance
            they equal `forward`'s log-probs (the model must be in eval mode).
        """
        self._check(feats)
        x = self.normalize(feats).unsqueeze(1)  # (B, 1, n, F)
        h1, conv1_in = self._stream_conv(self.subsample.conv1, state.conv1_in, x)
        h2, conv2_in = self._stream_conv(self.subsample.conv2, state.conv2_in, h1)
        h2 = h2.permute(0, 2, 1, 3).flatten(2)  # (B, m, C*F')
        ahead = torch.cat([state.ahead, h2], dim=1)  # (B, n_ahead, D)
        k = self.frames_ahead
        if final:
            ahead = F.pad(ahead, (0, 0, 0, k))
        ready = max(0, ahead.shape[1] - k)
        stacked = stack_ahead(ahead, k)[:, :ready]  # (B, ready, (1+k)*D); complete windows only
        rnn_state = state.rnn
        if ready:
            y, rnn_state = self.rnn(self.input(stacked), state.rnn)  # (B, ready, H)
            out = self.head(y).log_softmax(dim=-1)  # (B, ready, V)
        else:
            out = stacked.new_zeros(stacked.shape[0], 0, self.config.n_units)
        new = StreamState(conv1_in, conv2_in, ahead[:, ready:], rnn_state)
        new.frames_in = state.frames_in + feats.shape[1]
        return out, new

    def flops_per_token(self, context_len: int) -> int:
        """Inference FLOPs per output frame (40 ms of audio)."""
        return sum(flops_per_token(m, context_len) for m in self.children())
