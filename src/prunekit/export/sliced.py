"""Compact forms of layers that lost whole rows or columns but must keep their input/output width.

- `SlicedLinear`: a Linear whose all-zero input columns are skipped (the input is gathered) and
  whose all-zero output rows are not computed (they are filled with their bias, or 0). The kept
  block is an ordinary inner layer (DenseLinear, Int8Linear, ...), so `fastest_dense` and
  `quantize_int8` convert it like any other Linear.
- `LowRankEmbedding`: the compact form of a rank-pruned `FactorizedEmbedding`, a (num, k) table
  looked up and then projected by a (k, dim) matrix.
- `SlicedEmbedding`: an embedding whose all-zero columns are not stored: a (num, k) table whose
  rows are scattered into the kept columns of a (..., dim) zero output.
- `LowRankConv`: the compact form of a rank-pruned `FactorizedConv`: a conv to k channels (the
  original kernel, stride, padding) followed by a 1 x 1 conv to the output channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.eval.flops import flops_per_token


def _index(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().to(torch.int64).contiguous()


class SlicedLinear(nn.Module):
    """y (..., out) = W x + b where only rows `rows` and columns `cols` of W are nonzero.

    `inner` maps (..., len(cols)) -> (..., len(rows)) and holds the kept block and kept bias
    entries; outputs outside `rows` equal `fill` (the dropped bias entries, zeros elsewhere).
    """

    def __init__(
        self,
        inner: nn.Module,
        in_features: int,
        out_features: int,
        rows: Tensor | None,
        cols: Tensor | None,
        fill: Tensor | None,
    ):
        """Args: inner layer; full widths; rows (k_out) / cols (k_in) kept int64 indices or None
        for all; fill (out) fp32 values of the dropped outputs (needed when rows is given)."""
        super().__init__()
        self.inner = inner
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.register_buffer("rows", _index(rows))
        self.register_buffer("cols", _index(cols))
        f = None if rows is None else fill.detach().float().contiguous()
        self.register_buffer("fill", f)

    @classmethod
    def from_linear(cls, linear: nn.Module, rows: Tensor | None, cols: Tensor | None):
        """Slice an nn.Linear (weight (out, in), bias (out) or None) to the kept rows/cols."""
        w = linear.weight.detach()
        b = None if linear.bias is None else linear.bias.detach()
        r = torch.arange(w.size(0)) if rows is None else rows
        c = torch.arange(w.size(1)) if cols is None else cols
        block = w.index_select(0, r).index_select(1, c)  # (k_out, k_in)
        inner = nn.Linear(block.size(1), block.size(0), bias=b is not None)
        with torch.no_grad():
            inner.weight.copy_(block)
            if b is not None:
                inner.bias.copy_(b.index_select(0, r))
        fill = None
        if rows is not None:
            fill = torch.zeros(w.size(0)) if b is None else b.clone().float()
            fill[rows] = 0.0
        return cls(inner.eval(), w.size(1), w.size(0), rows, cols, fill)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out)."""
        if self.cols is not None:
            x = x.index_select(-1, self.cols)  # (..., k_in)
        y = self.inner(x)  # (..., k_out)
        if self.rows is None:
            return y
        base = self.fill.expand(*y.shape[:-1], self.out_features)  # (..., out)
        return base.scatter(-1, self.rows.expand_as(y), y)  # (..., out): ONNX ScatterElements

    def flops_per_token(self, context_len: int = 1) -> int:
        """FLOPs of the inner block (the gather and scatter are data movement)."""
        return flops_per_token(self.inner, context_len)

    def extra_repr(self) -> str:
        rows = self.out_features if self.rows is None else self.rows.numel()
        cols = self.in_features if self.cols is None else self.cols.numel()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"kept_rows={rows}, kept_cols={cols}"
        )


class LowRankEmbedding(nn.Module):
    """Embedding rows E[i] = table[i] @ proj with table (num, k) and proj (k, dim)."""

    def __init__(self, table: Tensor, proj: Tensor, padding_idx: int | None = None):
        """Args: table (num_embeddings, k); proj (k, embedding_dim); padding_idx as nn.Embedding."""
        super().__init__()
        self.num_embeddings, self.rank = int(table.shape[0]), int(table.shape[1])
        self.embedding_dim = int(proj.shape[1])
        self.padding_idx = padding_idx
        self.table = nn.Parameter(table.detach().contiguous(), requires_grad=False)
        self.proj = nn.Parameter(proj.detach().contiguous(), requires_grad=False)

    @property
    def weight(self) -> Tensor:
        """The dense (num, dim) table, recomputed."""
        return self.table @ self.proj

    def forward(self, idx: Tensor) -> Tensor:
        """idx (...) token ids -> (..., dim)."""
        return F.embedding(idx, self.table) @ self.proj  # (..., k) @ (k, dim)

    def flops_per_token(self, context_len: int = 1) -> int:
        """2 k dim (the lookup is free)."""
        return 2 * self.rank * self.embedding_dim

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}"


class SlicedEmbedding(nn.Module):
    """Embedding rows E[i] (dim) that are zero outside the kept columns `cols` (k)."""

    def __init__(self, table: Tensor, cols: Tensor, embedding_dim: int, padding_idx=None):
        """Args: table (num_embeddings, k) kept columns; cols (k) their int64 indices in 0..dim-1;
        embedding_dim: the full output width; padding_idx as nn.Embedding."""
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(table.shape[0]), int(embedding_dim)
        self.padding_idx = padding_idx
        self.table = nn.Parameter(table.detach().contiguous(), requires_grad=False)
        self.register_buffer("cols", _index(cols))

    @classmethod
    def from_embedding(cls, emb: nn.Module, cols: Tensor) -> SlicedEmbedding:
        """Keep columns `cols` of `emb.weight` (num, dim)."""
        w = emb.weight.detach()
        return cls(w.index_select(1, cols), cols, w.shape[1], getattr(emb, "padding_idx", None))

    @property
    def weight(self) -> Tensor:
        """The dense (num, dim) table with its zero columns, materialized."""
        full = self.table.new_zeros(self.num_embeddings, self.embedding_dim)
        return full.index_copy(1, self.cols, self.table)

    def forward(self, idx: Tensor) -> Tensor:
        """idx (...) token ids -> (..., dim)."""
        e = F.embedding(idx, self.table)  # (..., k)
        base = e.new_zeros(()).expand(*e.shape[:-1], self.embedding_dim)  # (..., dim)
        return base.scatter(-1, self.cols.expand_as(e), e)  # ONNX ScatterElements

    def flops_per_token(self, context_len: int = 1) -> int:
        """0: a table lookup."""
        return 0

    def extra_repr(self) -> str:
        k = self.cols.numel()
        return f"{self.num_embeddings}, {self.embedding_dim}, kept_cols={k}"


class LowRankConv(nn.Sequential):
    """conv(x) through rank k: `first` (in -> k, the original kernel) then `second` (1 x 1, k -> out,
    with the bias). Both are plain nn.Conv1d / nn.Conv2d."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__(first, second)

    @property
    def rank(self) -> int:
        """k, the channels between the two convs."""
        return int(self[0].out_channels)


class TiedEmbedding(nn.Module):
    """An embedding that reads its table from the output layer it is tied to (stored once).

    `table` is the output layer's own Parameter: (num, k) rows, or (k, num) with `transposed`
    (a pre-transposed `DenseLinear` / `LowRankLinear`). Row i of the embedding is table row i
    (column i when transposed), times `proj` (dim, k) as `F.linear` when the output layer is low
    rank (its `V_t`), scattered into the kept columns `cols` of a (..., dim) zero output when the
    output layer is a `SlicedLinear` reading only those columns.
    """

    def __init__(
        self,
        table: nn.Parameter,
        *,
        transposed: bool,
        num_embeddings: int,
        embedding_dim: int,
        cols: Tensor | None = None,
        proj: nn.Parameter | None = None,
        padding_idx: int | None = None,
    ):
        super().__init__()
        self.table, self.proj, self.transposed = table, proj, transposed
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        self.register_buffer("cols", _index(cols))

    @property
    def rank(self) -> int | None:
        """k of a low-rank table (with `proj`), else None."""
        return None if self.proj is None else int(self.proj.shape[1])

    @property
    def weight(self) -> Tensor:
        """The dense (num, dim) table, recomputed."""
        return self.forward(torch.arange(self.num_embeddings, device=self.table.device))

    def forward(self, idx: Tensor) -> Tensor:
        """idx (...) token ids -> (..., dim)."""
        flat = idx.reshape(-1)
        if self.transposed:
            e = self.table.index_select(1, flat).t()  # (N, k)
        else:
            e = self.table.index_select(0, flat)  # (N, k)
        if self.proj is not None:
            e = F.linear(e, self.proj)  # (N, dim or kept)
        e = e.reshape(*idx.shape, e.shape[-1])
        if self.cols is None:
            return e
        base = e.new_zeros(()).expand(*e.shape[:-1], self.embedding_dim)  # (..., dim)
        return base.scatter(-1, self.cols.expand_as(e), e)

    def flops_per_token(self, context_len: int = 1) -> int:
        """2 k dim with a projection, else 0 (a lookup)."""
        return 0 if self.proj is None else 2 * int(self.proj.numel())

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, transposed={self.transposed}"
