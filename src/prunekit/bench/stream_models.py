"""A streaming recurrent acoustic model stand-in for `prunekit bench stream`, and its ONNX form.

`FrameStackRNN` has the streaming interface of prunekit's CTC acoustic model (`init_stream(B)`,
`step(feats (B, n, F), state) -> (log_probs (B, m, V), state)`) at the same shapes: every
`stack` 10 ms frames (40 ms) are concatenated, projected by a Linear, run through a
unidirectional GRU / LSTM stack and a Linear output layer. It has no convolutions, so the
benchmark times the recurrent and linear layers that compression changes; the real model
(`--model ctc`, when prunekit.models has it) adds its convolution front-end.

`OrtStream` runs one `FrameStackRNN` step through onnxruntime (the Linear -> RNN -> Linear core
exported with torch.onnx; frames are buffered in Python), so the peer shows up in the same table.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError

RNNState = Tensor | tuple[Tensor, Tensor]


@dataclass
class StackConfig:
    """Shape of a `FrameStackRNN` (defaults: prunekit's acoustic model, streaming)."""

    n_mels: int = 80
    stack: int = 4  # input frames (10 ms) per RNN step
    d_input: int = 256
    cell: str = "gru"
    d_hidden: int = 256
    n_layer: int = 3
    n_units: int = 29  # CTC units: blank, space, apostrophe, a-z

    def __post_init__(self) -> None:
        if self.cell not in ("gru", "lstm"):
            raise PrunekitError(f"cell={self.cell!r} must be 'gru' or 'lstm'")
        for name in ("n_mels", "stack", "d_input", "d_hidden", "n_layer", "n_units"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PrunekitError(f"{name}={value!r} must be an integer >= 1")


@dataclass
class StackState:
    """Frames waiting to complete a stack (B, n < stack, F) and the RNN state."""

    pending: Tensor
    rnn: RNNState | None = None


class FrameStackRNN(nn.Module):
    """feats (B, T, F) -> [stack frames] -> Linear -> ReLU -> GRU/LSTM -> Linear -> log-softmax."""

    def __init__(self, config: StackConfig | None = None, **kw: Any) -> None:
        super().__init__()
        c = self.config = config or StackConfig(**kw)
        self.input = nn.Linear(c.n_mels * c.stack, c.d_input)
        rnn_cls = nn.LSTM if c.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(c.d_input, c.d_hidden, num_layers=c.n_layer, batch_first=True)
        self.head = nn.Linear(c.d_hidden, c.n_units)

    def _core(self, stacked: Tensor, state: RNNState | None) -> tuple[Tensor, RNNState]:
        h = torch.relu(self.input(stacked))  # (B, m, d_input)
        y, state = self.rnn(h, state)  # (B, m, H)
        return self.head(y).log_softmax(dim=-1), state  # (B, m, V)

    def forward(self, feats: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """feats (B, T, F) -> log_probs (B, ceil(T / stack), V), out_lengths (B,)."""
        B, T, F = feats.shape
        k = self.config.stack
        pad = (-T) % k
        x = torch.nn.functional.pad(feats, (0, 0, 0, pad)).reshape(B, (T + pad) // k, k * F)
        out, _ = self._core(x, None)
        lengths = torch.full((B,), T) if lengths is None else lengths
        return out, (lengths + k - 1) // k

    def init_stream(self, batch_size: int = 1) -> StackState:
        """The state before the first `step`."""
        return StackState(pending=torch.zeros(batch_size, 0, self.config.n_mels))

    @torch.no_grad()
    def step(self, feats: Tensor, state: StackState) -> tuple[Tensor, StackState]:
        """Feed feats (B, n, F); returns the log-probs (B, m, V) of the stacks they complete."""
        x = torch.cat([state.pending, feats], dim=1)  # (B, n', F)
        k, B = self.config.stack, x.shape[0]
        m = x.shape[1] // k
        if m == 0:
            return x.new_zeros(B, 0, self.config.n_units), StackState(x, state.rnn)
        stacked = x[:, : m * k].reshape(B, m, k * x.shape[2])  # (B, m, k F)
        out, rnn_state = self._core(stacked, state.rnn)
        return out, StackState(x[:, m * k :], rnn_state)

    def flops_per_token(self, context_len: int = 1) -> int:
        """FLOPs per output frame (one RNN step, `stack` input frames)."""
        from prunekit.eval.flops import flops_per_token

        return sum(flops_per_token(m, context_len) for m in self.children())


class _Core(nn.Module):
    """One step of a FrameStackRNN with tensor-only inputs and outputs, for ONNX."""

    def __init__(self, model: FrameStackRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, stacked: Tensor, h: Tensor, c: Tensor | None = None):
        state = h if c is None else (h, c)
        out, new = self.model._core(stacked, state)
        return (out, new) if c is None else (out, new[0], new[1])


class OrtStream:
    """A FrameStackRNN's streaming step run by onnxruntime (fp32, CPU, `threads` intra-op)."""

    def __init__(self, model: FrameStackRNN, threads: int = 1) -> None:
        import onnxruntime as ort

        self.config = model.config
        self.lstm = isinstance(model.rnn, nn.LSTM)
        c = model.config
        shape = (c.n_layer, 1, c.d_hidden)
        args = (torch.zeros(1, 1, c.stack * c.n_mels), torch.zeros(shape))
        names = ["stacked", "h"] + (["c"] if self.lstm else [])
        outs = ["log_probs", "h_out"] + (["c_out"] if self.lstm else [])
        args = (*args, torch.zeros(shape)) if self.lstm else args
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "step.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(_Core(model).eval(), args, str(path), input_names=names,
                                  output_names=outs, opset_version=17, dynamo=False)  # fmt: skip
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        self.names = names

    def init_stream(self, batch_size: int = 1) -> dict[str, Any]:
        if batch_size != 1:
            raise PrunekitError("the onnxruntime stream runs batch 1 only")
        c = self.config
        zeros = torch.zeros(c.n_layer, 1, c.d_hidden).numpy()
        state = {"pending": torch.zeros(1, 0, c.n_mels), "h": zeros}
        if self.lstm:
            state["c"] = zeros.copy()
        return state

    def step(self, feats: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        x = torch.cat([state["pending"], feats], dim=1)
        k = self.config.stack
        if x.shape[1] < k:
            return x.new_zeros(1, 0, self.config.n_units), {**state, "pending": x}
        feed = {"stacked": x[:, :k].reshape(1, 1, -1).numpy(), "h": state["h"]}
        if self.lstm:
            feed["c"] = state["c"]
        out = self.session.run(None, feed)
        new = {"pending": x[:, k:], "h": out[1]}
        if self.lstm:
            new["c"] = out[2]
        return torch.from_numpy(out[0]), new

    def flops_per_token(self, context_len: int = 1) -> int:
        return FrameStackRNN(self.config).flops_per_token(context_len)


def stack_model(config: dict[str, Any] | None = None) -> FrameStackRNN:
    """A FrameStackRNN from a dict of `StackConfig` fields (defaults for the missing ones)."""
    fields = {f.name for f in dataclasses.fields(StackConfig)}
    unknown = sorted(set(config or {}) - fields)
    if unknown:
        raise PrunekitError(
            f"stack model config has unknown key(s) {unknown}: use {sorted(fields)}"
        )
    return FrameStackRNN(StackConfig(**(config or {}))).eval()
