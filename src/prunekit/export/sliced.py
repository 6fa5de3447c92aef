"""Compact forms of layers that lost whole rows or columns but must keep their input/output width.

- `SlicedLinear`: a Linear whose all-zero input columns are skipped (the input is gathered) and
  whose all-zero output rows are not computed (they are filled with their bias, or 0). The kept
  block is an ordinary inner layer (DenseLinear, Int8Linear, ...), so `fastest_dense` and
  `quantize_int8` convert it like any other Linear.
- `LowRankEmbedding`: the compact form of a rank-pruned `FactorizedEmbedding`, a (num, k) table
  looked up and then projected by a (k, dim) matrix.
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
