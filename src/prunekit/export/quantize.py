"""Dynamic int8 quantization: prunekit's (composes with low-rank and pruned layers) and the peer one.

`quantize_int8` (weights int8, activations quantized on the fly, fp32 in and out):

- nn.Linear / DenseLinear -> `Int8Linear`, per-output-channel symmetric scales, so the zeros of a
  pruned layer stay exactly zero;
- LowRankLinear -> `Int8LowRankLinear` (both thin factors int8, rank kept);
- SparseLinear -> kept in fp32 CSR, replaced by an `Int8Linear` of its dense weight, or whichever is
  faster on this CPU (`sparse=`);
- nn.LSTM / nn.GRU -> `torch.ao.nn.quantized.dynamic.LSTM` / `GRU` (per-tensor symmetric int8
  weights); an LSTM with `proj_size` or without bias stays fp32 (torch has no int8 kernel for it);
- embeddings, LayerNorms and attention arithmetic stay fp32 (the embedding is a table lookup: int8
  would save bytes, not time). A weight tied between the embedding and the output layer is stored
  twice: fp32 in the embedding, int8 in the output layer.

`torch_dynamic_int8` is the peer baseline: plain `torch.ao.quantization.quantize_dynamic`.

Both turn an `RNNLM` into a `QuantizedRNNLM` (same modules, an `init_state` that works without fp32
RNN parameters); FLOPs of torch's dynamic modules are registered with prunekit.eval.flops.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.ao.nn.quantized.dynamic as qd
from torch import nn
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase as DynamicRNNBase

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token, register_flops
from prunekit.export.fast_dense import plain_rnn_copy
from prunekit.export.layers import (
    DenseLinear,
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    SparseLinear,
    quiet_quantization,
)
from prunekit.export.replace import replace_modules
from prunekit.export.timing import median_us, num_threads
from prunekit.models.rnn_lm import RNNLM, RNNState

SparsePolicy = Literal["keep", "int8", "fastest"]


class QuantizedRNNLM(RNNLM):
    """An `RNNLM` whose `rnn` may be a dynamic-quantized LSTM/GRU (which has no fp32 parameters)."""

    def init_state(self, batch_size: int) -> RNNState:
        """Zero state for `batch_size` sequences; fp32 on CPU for a quantized RNN."""
        rnn = self.rnn
        if not isinstance(rnn, DynamicRNNBase):
            return super().init_state(batch_size)
        n = rnn.num_layers * (2 if rnn.bidirectional else 1)
        h = torch.zeros(n, batch_size, rnn.hidden_size)
        return (h, torch.zeros_like(h)) if rnn.mode == "LSTM" else h


def _as_quantized_lm(model: nn.Module) -> nn.Module:
    if type(model) is RNNLM and isinstance(model.rnn, DynamicRNNBase):
        model.__class__ = QuantizedRNNLM
    return model


def _int8_rnn(rnn: nn.LSTM | nn.GRU) -> nn.Module | None:
    if getattr(rnn, "proj_size", 0) or not rnn.bias:
        return None
    plain = plain_rnn_copy(rnn)
    plain.qconfig = torch.ao.quantization.default_dynamic_qconfig
    with quiet_quantization():
        return (qd.LSTM if isinstance(rnn, nn.LSTM) else qd.GRU).from_float(plain)


def _sparse_or_int8(
    layer: SparseLinear, policy: SparsePolicy, batch_size: int, threads: int, repeats: int
) -> nn.Module:
    if policy == "keep":
        return layer
    int8 = Int8Linear.from_linear(layer)
    if policy == "int8":
        return int8
    x = torch.randn(batch_size, layer.in_features, generator=torch.Generator().manual_seed(0))
    with num_threads(threads):
        t = median_us({"csr": lambda: layer(x), "int8": lambda: int8(x)}, repeats=repeats)
    return int8 if t["int8"] < t["csr"] else layer


def quantize_int8(
    model: nn.Module,
    *,
    sparse: SparsePolicy = "fastest",
    batch_size: int = 1,
    threads: int = 1,
    repeats: int = 10,
) -> nn.Module:
    """A deep copy of `model` (eval mode) with its linear and recurrent layers in dynamic int8.

    Args:
        model: fp32 model, plain or already compact (DenseLinear / LowRankLinear / SparseLinear).
        sparse: for each SparseLinear: "keep" it (fp32 CSR), make it "int8" (dense int8 of its
            weight, zeros kept), or time both at `batch_size` rows and keep the "fastest".
        batch_size, threads, repeats: the timing behind sparse="fastest".

    Returns:
        The quantized copy (see the module docstring for what changes).

    Raises:
        PrunekitError: an unknown `sparse` policy.
    """
    if sparse not in ("keep", "int8", "fastest"):
        raise PrunekitError(f"sparse={sparse!r} is not a policy: use 'keep', 'int8' or 'fastest'")
    new = copy.deepcopy(model).eval()

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if isinstance(m, Int8Linear | Int8LowRankLinear | qd.Linear | DynamicRNNBase):
            return m
        if isinstance(m, nn.Linear | DenseLinear):
            return Int8Linear.from_linear(m)
        if isinstance(m, LowRankLinear):
            return Int8LowRankLinear.from_low_rank(m)
        if isinstance(m, SparseLinear):
            return _sparse_or_int8(m, sparse, batch_size, threads, repeats)
        if isinstance(m, nn.LSTM | nn.GRU):
            q = _int8_rnn(m)
            return m if q is None else q
        return None

    replace_modules(new, convert)
    return _as_quantized_lm(new)


def torch_dynamic_int8(model: nn.Module) -> nn.Module:
    """The peer baseline: `quantize_dynamic(copy, {nn.Linear, nn.LSTM, nn.GRU}, dtype=qint8)`.

    Only the class of an `RNNLM` changes afterwards (to `QuantizedRNNLM`, so `init_state` works);
    the kernels are exactly torch's. Compact prunekit layers are left untouched by torch.
    """
    new = copy.deepcopy(model).eval()
    with quiet_quantization():
        new = torch.ao.quantization.quantize_dynamic(
            new, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8
        )
    return _as_quantized_lm(new)


@register_flops(qd.Linear)
def _dynamic_linear_flops(m: qd.Linear, context_len: int) -> int:
    bias = m.out_features if m.bias() is not None else 0
    return 2 * m.in_features * m.out_features + bias


@register_flops(DynamicRNNBase)
def _dynamic_rnn_flops(m: DynamicRNNBase, context_len: int) -> int:
    # Count an fp32 twin built on the meta device: same shapes, same arithmetic.
    cls = nn.LSTM if m.mode == "LSTM" else nn.GRU
    twin = cls(
        m.input_size,
        m.hidden_size,
        num_layers=m.num_layers,
        bias=m.bias,
        batch_first=m.batch_first,
        bidirectional=m.bidirectional,
        device="meta",
    )
    return flops_per_token(twin, context_len)
