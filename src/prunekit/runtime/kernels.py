"""Scriptable one-op-or-two kernels for the layers of a compact model, 2-D in, 2-D out.

`linear_kernel(layer)` turns any projection prunekit exports (nn.Linear, DenseLinear in either
layout, LowRankLinear, SparseLinear, Int8Linear / torch's dynamic int8 Linear, Int8LowRankLinear,
SlicedLinear around any of these) into a small module whose `forward(x (N, in)) -> (N, out)` is
the layer's arithmetic and nothing else: no shape checks, no reshapes, no Python beyond the call.
`embedding_kernel(layer)` does the same for nn.Embedding, LowRankEmbedding, SlicedEmbedding and
TiedEmbedding, (N,) ids -> (N, C).

The kernels share the layer's tensors (no copies; a transposed view is materialized only where a
layer stores none of its own) and are TorchScript-compatible, so `prunekit.runtime` can compile a
whole decode step into one call.
"""

import warnings

import torch
import torch.ao.nn.quantized.dynamic as qd
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.export.layers import (
    DenseLinear,
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    SparseLinear,
)
from prunekit.export.sliced import LowRankEmbedding, SlicedEmbedding, SlicedLinear, TiedEmbedding


def _detached(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


class MatmulKernel(nn.Module):
    """y = x @ W_t (+ b), one addmm; W_t (in, out)."""

    bias: Tensor | None

    def __init__(self, weight_t: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight_t = weight_t.detach()
        self.bias = _detached(bias)
        self.one = 1.0  # an attribute, not a constant: TorchScript would split addmm(beta=1)

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias
        if bias is None:
            return torch.mm(x, self.weight_t)
        return torch.addmm(bias, x, self.weight_t, beta=self.one)


class RowsKernel(nn.Module):
    """y = F.linear(x, W, b) on a row-major W (out, in) (a GEMV for one row)."""

    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.weight = weight.detach()
        self.bias = _detached(bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class LowRankKernel(nn.Module):
    """y = (x @ V_t) @ U_t (+ b): V_t (in, r), U_t (r, out)."""

    bias: Tensor | None

    def __init__(self, V_t: Tensor, U_t: Tensor, bias: Tensor | None):
        super().__init__()
        self.V_t, self.U_t = V_t.detach(), U_t.detach()
        self.bias = _detached(bias)
        self.one = 1.0  # see MatmulKernel

    def forward(self, x: Tensor) -> Tensor:
        h = torch.mm(x, self.V_t)  # (N, r)
        bias = self.bias
        if bias is None:
            return torch.mm(h, self.U_t)
        return torch.addmm(bias, h, self.U_t, beta=self.one)


class CsrKernel(nn.Module):
    """y = W x (+ b) with W (out, in) sparse CSR (int32 indices): addmv for one row, else addmm."""

    def __init__(self, weight: Tensor, bias: Tensor | None, out_features: int):
        super().__init__()
        self.weight = weight
        self.bias = torch.zeros(out_features) if bias is None else bias.detach()
        self.bias_col = self.bias.unsqueeze(1)  # (out, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.size(0) == 1:
            return torch.addmv(self.bias, self.weight, x[0]).unsqueeze(0)
        return torch.addmm(self.bias_col, self.weight, x.t()).t()


class Int8Kernel(nn.Module):
    """torch's `quantized::linear_dynamic` on prepacked int8 weights (activations quantized per
    call with the 7-bit range, as `torch.ao.nn.quantized.dynamic.Linear`)."""

    def __init__(self, layer: qd.Linear):
        super().__init__()
        self.packed = layer._packed_params._packed_params

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)


class Int8LowRankKernel(nn.Module):
    """Two int8 thin layers through rank r."""

    def __init__(self, layer: Int8LowRankLinear):
        super().__init__()
        self.first = Int8Kernel(layer.first)
        self.second = Int8Kernel(layer.second)

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))


class SlicedKernel(nn.Module):
    """Gather the kept input columns, run the kept block, scatter into the kept output rows."""

    def __init__(self, layer: SlicedLinear):
        super().__init__()
        self.inner = linear_kernel(layer.inner)
        self.has_cols = layer.cols is not None
        self.has_rows = layer.rows is not None
        empty = torch.zeros(0, dtype=torch.long)
        self.cols = layer.cols if layer.cols is not None else empty
        self.rows = layer.rows if layer.rows is not None else empty
        self.fill = layer.fill if layer.fill is not None else torch.zeros(0)

    def forward(self, x: Tensor) -> Tensor:
        if self.has_cols:
            x = x.index_select(1, self.cols)
        y = self.inner(x)
        if not self.has_rows:
            return y
        out = self.fill.unsqueeze(0).repeat(y.size(0), 1)
        return out.index_copy_(1, self.rows, y)


def linear_kernel(layer: nn.Module) -> nn.Module:
    """The kernel computing `layer` on (N, in) rows (see the module docstring).

    Raises:
        PrunekitError: a layer type the runtime has no kernel for (e.g. a masked, parametrized
            Linear: export it with `prunekit.export.compact.compact` first).
    """
    if isinstance(layer, DenseLinear):
        if layer.transposed:
            return MatmulKernel(layer.weight_t, layer.bias)
        return RowsKernel(layer.weight_rows, layer.bias)
    if isinstance(layer, LowRankLinear):
        return LowRankKernel(layer.V_t, layer.U_t, layer.bias)
    if isinstance(layer, SparseLinear):
        return CsrKernel(layer.csr, layer.bias, layer.out_features)
    if isinstance(layer, Int8LowRankLinear):
        return Int8LowRankKernel(layer)
    if isinstance(layer, qd.Linear) and layer.weight().dtype == torch.qint8:
        return Int8Kernel(layer)
    if isinstance(layer, SlicedLinear):
        return SlicedKernel(layer)
    if type(layer) is nn.Linear and not hasattr(layer, "parametrizations"):
        return RowsKernel(layer.weight, layer.bias)
    raise PrunekitError(
        f"the decode runtime has no kernel for {type(layer).__name__}: export the model with "
        "prunekit.export.compact.compact (or `prunekit export`) before building a runtime"
    )


Triple = tuple[Tensor, Tensor, Tensor]


class SplitKernel(nn.Module):
    """Three projections of one input as one kernel over their concatenated output rows."""

    def __init__(self, inner: nn.Module, sizes: tuple[int, int, int]):
        super().__init__()
        self.inner = inner
        self.end1, self.end2 = sizes[0], sizes[0] + sizes[1]

    def forward(self, x: Tensor) -> Triple:
        y = self.inner(x)  # (N, out1 + out2 + out3)
        a, b = self.end1, self.end2
        return y.narrow(1, 0, a), y.narrow(1, a, b - a), y.narrow(1, b, y.size(1) - b)


class SeparateKernels(nn.Module):
    """Three projections of one input, each its own kernel (layers of different kinds)."""

    def __init__(self, kernels: list[nn.Module]):
        super().__init__()
        self.first, self.second, self.third = kernels

    def forward(self, x: Tensor) -> Triple:
        return self.first(x), self.second(x), self.third(x)


def _cat_bias(layers: list[nn.Module], biases: list[Tensor | None]) -> Tensor | None:
    if all(b is None for b in biases):
        return None
    return torch.cat([torch.zeros(m.out_features) if b is None else b for m, b in
                      zip(layers, biases, strict=True)])  # fmt: skip


def _bias(m: nn.Module) -> Tensor | None:
    b = m.bias() if isinstance(m, qd.Linear) else m.bias
    return None if b is None else b.detach()


def fused_kernel(layers: list[nn.Module]) -> nn.Module:
    """One kernel computing three projections of the same input, `forward(x) -> (y1, y2, y3)`.

    Dense, CSR or int8 layers of one kind become one matmul over their concatenated weights (a
    copy; int8 rows keep their scales, so their int8 values). Low-rank layers stay separate: one
    thin matmul through the concatenated V factors measured slower than three at batch 1.
    """
    kinds = {type(m) for m in layers}
    sizes = tuple(int(m.out_features) for m in layers)
    if len(kinds) == 1 and kinds <= {DenseLinear, nn.Linear, SparseLinear, Int8Linear}:
        plain = [m for m in layers if not hasattr(m, "parametrizations")]
        if len(plain) == len(layers):
            kind = kinds.pop()
            if kind is Int8Linear:
                weight = torch.cat([m.dequantized_weight() for m in layers])
            else:
                weight = torch.cat([m.weight.detach() for m in layers])
            bias = _cat_bias(layers, [_bias(m) for m in layers])
            if kind is Int8Linear:
                return SplitKernel(Int8Kernel(Int8Linear.from_weight(weight, bias)), sizes)
            if kind is SparseLinear:
                return SplitKernel(linear_kernel(SparseLinear.from_linear(_Weights(weight, bias))),
                                   sizes)  # fmt: skip
            return SplitKernel(MatmulKernel(weight.t().contiguous(), bias), sizes)
    return SeparateKernels([linear_kernel(m) for m in layers])


class _Weights:
    """A stand-in layer exposing `.weight` and `.bias` (for SparseLinear.from_linear)."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        self.weight, self.bias = weight, bias


class TableKernel(nn.Module):
    """Rows of an embedding table (V, C) for (N,) ids."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.weight = weight.detach()

    def forward(self, ids: Tensor) -> Tensor:
        return self.weight.index_select(0, ids)


class LowRankTableKernel(nn.Module):
    """table[ids] @ proj: table (V, k), proj (k, C)."""

    def __init__(self, layer: LowRankEmbedding):
        super().__init__()
        self.table, self.proj = layer.table.detach(), layer.proj.detach()

    def forward(self, ids: Tensor) -> Tensor:
        return torch.mm(self.table.index_select(0, ids), self.proj)


class GatherTableKernel(nn.Module):
    """Rows (or columns, `transposed`) of a table for (N,) ids, times `proj` if any, scattered
    into the kept columns `cols` of (N, dim) if any: SlicedEmbedding and TiedEmbedding."""

    proj: Tensor | None
    cols: Tensor | None

    def __init__(self, layer: SlicedEmbedding | TiedEmbedding):
        super().__init__()
        self.table, self.cols = layer.table.detach(), layer.cols
        self.transposed = bool(getattr(layer, "transposed", False))
        self.proj = _detached(getattr(layer, "proj", None))
        self.dim = layer.embedding_dim

    def forward(self, ids: Tensor) -> Tensor:
        if self.transposed:
            e = self.table.index_select(1, ids).t()  # (N, k)
        else:
            e = self.table.index_select(0, ids)  # (N, k)
        proj = self.proj
        if proj is not None:
            e = torch.mm(e, proj.t())
        cols = self.cols
        if cols is None:
            return e
        return e.new_zeros(e.size(0), self.dim).index_copy(1, cols, e)


def embedding_kernel(layer: nn.Module) -> nn.Module:
    """The kernel looking up (N,) ids in `layer` (nn.Embedding, LowRankEmbedding,
    SlicedEmbedding or TiedEmbedding).

    Raises:
        PrunekitError: any other embedding type.
    """
    if isinstance(layer, LowRankEmbedding):
        return LowRankTableKernel(layer)
    if isinstance(layer, SlicedEmbedding | TiedEmbedding):
        return GatherTableKernel(layer)
    if type(layer) is nn.Embedding and not hasattr(layer, "parametrizations"):
        return TableKernel(layer.weight)
    raise PrunekitError(
        f"the decode runtime has no kernel for the embedding {type(layer).__name__}: export the "
        "model with prunekit.export.compact.compact first"
    )


def script(module: nn.Module) -> torch.jit.ScriptModule:
    """TorchScript `module`, silencing torch 2.13's deprecation notice of `torch.jit.script`.

    TorchScript is deprecated (torch recommends torch.compile / torch.export) but still ships and
    is what removes the Python overhead of a batch-1 decode step here: torch.compile recompiles per
    cache length and its compile time exceeds a benchmark's budget on this machine.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.script(module)
