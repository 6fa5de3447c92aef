"""The honest dense baseline: the same fp32 model, run on the fastest dense kernels we know.

Speed-ups of compressed models are quoted against this, not against the training-time module
layout, so that a "pruned model is 3x faster" claim is not just the slack of a slow dense path:

- every `nn.Linear` (and Hugging Face `Conv1D`, GPT-2's transposed Linear) becomes a
  `DenseLinear`, its weight stored pre-transposed for one addmm or
  as (out, in) for F.linear, whichever a timing at the decode batch size finds faster per layer
  (on the 2-core dev machine neither layout won everywhere: the pre-transposed one was ~1.7x
  faster for a 512 -> 6300 output layer at batch 1, F.linear faster for some FFN shapes);
- an `nn.LSTM` / `nn.GRU` runs with oneDNN switched off when that is faster for a single-token
  decode step on this CPU (PyTorch's default oneDNN RNN kernel was measured several times slower
  at batch 1), as a `OneDnnOffLSTM` / `OneDnnOffGRU` subclass, so `isinstance(m, nn.LSTM)` holds.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from prunekit.errors import PrunekitError
from prunekit.export.conv1d import conv1d_to_linear, is_hf_conv1d
from prunekit.export.layers import DenseLinear
from prunekit.export.replace import replace_modules
from prunekit.export.timing import check_positive_int, median_us, num_threads, onednn_disabled

DenseLayout = Literal["auto", "transposed", "rows"]


class OneDnnOffLSTM(nn.LSTM):
    """An `nn.LSTM` whose forward runs with oneDNN kernels switched off (same math)."""

    def forward(self, input, hx=None):  # noqa: A002 - nn.LSTM's signature
        """Same as nn.LSTM.forward."""
        with onednn_disabled():
            return super().forward(input, hx)


class OneDnnOffGRU(nn.GRU):
    """An `nn.GRU` whose forward runs with oneDNN kernels switched off (same math)."""

    def forward(self, input, hx=None):  # noqa: A002 - nn.GRU's signature
        """Same as nn.GRU.forward."""
        with onednn_disabled():
            return super().forward(input, hx)


def plain_rnn_copy(rnn: nn.LSTM | nn.GRU, cls: type[nn.RNNBase] | None = None) -> nn.RNNBase:
    """A fresh `cls` (default: nn.LSTM or nn.GRU) with the same config and (effective) weights.

    A masked (parametrized) weight is copied as the masked tensor, so zeros are baked in.
    """
    if cls is None:
        cls = nn.LSTM if isinstance(rnn, nn.LSTM) else nn.GRU
    kwargs = dict(
        input_size=rnn.input_size,
        hidden_size=rnn.hidden_size,
        num_layers=rnn.num_layers,
        bias=rnn.bias,
        batch_first=rnn.batch_first,
        dropout=rnn.dropout,
        bidirectional=rnn.bidirectional,
    )
    if issubclass(cls, nn.LSTM):
        kwargs["proj_size"] = rnn.proj_size
    w = next(iter(rnn.parameters()))
    new = cls(**kwargs, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        for name, p in new.named_parameters():
            p.copy_(getattr(rnn, name))
    new.train(rnn.training)
    return new


def _decode_input(rnn: nn.RNNBase, batch_size: int) -> Tensor:
    w = next(iter(rnn.parameters()))
    shape = (batch_size, 1, rnn.input_size) if rnn.batch_first else (1, batch_size, rnn.input_size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(w)


def onednn_rnn_faster(rnn: nn.RNNBase, *, batch_size: int = 1, repeats: int = 10) -> bool:
    """Whether `rnn` decodes one token faster with oneDNN on than off, on this CPU.

    Args:
        rnn: an nn.LSTM / nn.GRU.
        batch_size: sequences decoded together.
        repeats: interleaved timing samples per setting (medians compared).

    Returns:
        True if the default (oneDNN on) single-step forward has the lower median time.
    """
    x = _decode_input(rnn, batch_size)
    was_training = rnn.training
    rnn.eval()

    def off() -> object:
        with onednn_disabled():
            return rnn(x)

    try:
        t = median_us({"on": lambda: rnn(x), "off": off}, repeats=repeats)
    finally:
        rnn.train(was_training)
    return t["on"] < t["off"]


def transposed_layout_faster(linear: nn.Module, *, batch_size: int = 1, repeats: int = 10) -> bool:
    """Whether `DenseLinear`'s pre-transposed layout beats the (out, in) one for `linear`.

    Both are timed interleaved on `batch_size` random rows; a tie goes to the transposed layout.
    """
    w = linear.weight.detach()
    x = torch.randn(batch_size, w.size(1), generator=torch.Generator().manual_seed(0)).to(w)
    t_layer = DenseLinear.from_linear(linear, transposed=True)
    r_layer = DenseLinear.from_linear(linear, transposed=False)
    t = median_us({"t": lambda: t_layer(x), "rows": lambda: r_layer(x)}, repeats=repeats)
    return t["t"] <= t["rows"]


def _is_plain_linear(m: nn.Module) -> bool:
    # nn.MultiheadAttention reads out_proj.weight directly, so its Linear must stay.
    return isinstance(m, nn.Linear) and not isinstance(m, NonDynamicallyQuantizableLinear)


def fastest_dense(
    model: nn.Module,
    *,
    dense_layout: DenseLayout = "auto",
    rnn_onednn: bool | None = None,
    batch_size: int = 1,
    threads: int = 1,
    repeats: int = 10,
) -> nn.Module:
    """A deep copy of `model` (in eval mode) on the fastest dense fp32 kernels; same outputs.

    Every nn.Linear (masked ones as their masked weight) becomes a `DenseLinear`; layers that are
    already compact are kept. Each nn.LSTM / nn.GRU becomes a `OneDnnOffLSTM` / `OneDnnOffGRU`
    unless oneDNN is faster. A tied output layer gets its own copy of the weight, so the copy
    stores it twice.

    Args:
        model: the fp32 model (not modified).
        dense_layout: "transposed" (pre-transposed weights, addmm), "rows" (F.linear), or "auto":
            time both per layer at `batch_size` rows on this CPU and keep the faster.
        rnn_onednn: keep oneDNN for the RNNs (True), switch it off (False), or decide by timing a
            one-token step at `batch_size` on this CPU (None).
        batch_size: rows of those timings (1 for incremental decoding).
        threads: torch threads during the timings.
        repeats: timing samples per candidate.

    Returns:
        The converted copy.

    Raises:
        PrunekitError: an unknown `dense_layout`.
    """
    check_positive_int("batch_size", batch_size)
    if dense_layout not in ("auto", "transposed", "rows"):
        raise PrunekitError(
            f"dense_layout={dense_layout!r} is unknown: use 'auto', 'transposed' or 'rows'"
        )
    new = copy.deepcopy(model).eval()

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if is_hf_conv1d(m):
            m = conv1d_to_linear(m)
        if _is_plain_linear(m):
            transposed = dense_layout == "transposed"
            if dense_layout == "auto":
                transposed = transposed_layout_faster(m, batch_size=batch_size, repeats=repeats)
            return DenseLinear.from_linear(m, transposed=transposed)
        if isinstance(m, OneDnnOffLSTM | OneDnnOffGRU) or not isinstance(m, nn.LSTM | nn.GRU):
            return None
        keep = rnn_onednn
        if keep is None:
            keep = onednn_rnn_faster(m, batch_size=batch_size, repeats=repeats)
        if keep:
            return None
        return plain_rnn_copy(m, OneDnnOffLSTM if isinstance(m, nn.LSTM) else OneDnnOffGRU)

    with num_threads(threads):
        replace_modules(new, convert)
    return new.eval()
