"""Factorized layers for rank pruning (seed 004 §3.2.3): W = U diag(d) V with a mask over d.

`FactorizedLinear.from_linear(lin)` stores the SVD of W (out x in): U (out x r), d (r), V (r x in),
r = min(out, in), so at full rank it reproduces the Linear. The pruner masks d like any other
tensor (a `Mask` parametrization, so `self.d` is d * m); a pruned rank removes a column of U and a
row of V, and export keeps two thin matrices of the kept ranks (d folds into U).

Embeddings are factorized the same way (`FactorizedEmbedding`, W (V x dim) = U diag(d) V). A weight
tied between an embedding and the output Linear becomes one set of factors shared by a
`FactorizedEmbedding` and a `FactorizedLinear`, so it stays tied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.prune.masks import get_mask


def _svd(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD in float64 for accuracy: w (a, b) -> U (a, r), d (r), V (r, b)."""
    u, s, vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
    return tuple(t.to(w.dtype).contiguous() for t in (u, s, vh))  # type: ignore[return-value]


class _Factors(nn.Module):
    """Shared behaviour of the factorized modules: parameters U, d, V and rank bookkeeping."""

    U: nn.Parameter
    d: nn.Parameter
    V: nn.Parameter

    def _init_factors(self, a: int, b: int, rank: int, device, dtype) -> None:
        kw = {"device": device, "dtype": dtype}
        self.U = nn.Parameter(torch.empty(a, rank, **kw))
        self.d = nn.Parameter(torch.empty(rank, **kw))
        self.V = nn.Parameter(torch.empty(rank, b, **kw))

    def _set_factors(self, u: Tensor, d: Tensor, v: Tensor) -> None:
        self.U = u if isinstance(u, nn.Parameter) else nn.Parameter(u)
        self.d = d if isinstance(d, nn.Parameter) else nn.Parameter(d)
        self.V = v if isinstance(v, nn.Parameter) else nn.Parameter(v)

    @property
    def rank(self) -> int:
        """Stored rank r (pruned ranks included)."""
        return int(self.V.shape[0])

    @property
    def kept_rank(self) -> int:
        """Number of ranks not masked."""
        mask = get_mask(self, "d")
        return self.rank if mask is None else int(mask.mask.sum())

    @property
    def weight(self) -> Tensor:
        """The dense matrix U diag(d * m) V (out, in) or (num_embeddings, dim), recomputed."""
        return (self.U * self.d) @ self.V  # (a, r) * (r,) @ (r, b)


class FactorizedLinear(_Factors):
    """A Linear stored as U (out, r), d (r), V (r, in): y = ((x @ V.T) * d) @ U.T + bias."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_factors(out_features, in_features, rank, device, dtype)
        self.bias = (
            nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FactorizedLinear:
        """Factorize `linear` at full rank (its bias Parameter is reused, not copied)."""
        w = linear.weight
        m = cls(linear.in_features, linear.out_features, min(w.shape), bias=False, device=w.device)
        m._set_factors(*_svd(w))
        m.bias = linear.bias
        return m

    @classmethod
    def from_factors(
        cls, U: nn.Parameter, d: nn.Parameter, V: nn.Parameter, bias
    ) -> FactorizedLinear:
        """Build a layer around existing factor Parameters (shared, e.g. with a tied embedding)."""
        m = cls(V.shape[1], U.shape[0], d.shape[0], bias=False, device=d.device)
        m._set_factors(U, d, V)
        m.bias = bias
        return m

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out) through two thin matmuls."""
        h = F.linear(x, self.V) * self.d  # (..., r)
        return F.linear(h, self.U, self.bias)  # (..., out)

    def flops_per_token(self, context_len: int = 1) -> int:
        """FLOPs per token at the kept rank k: 2k(in + out) + k (+ out for the bias).

        `context_len` is accepted for the interface of prunekit.eval.flops; a Linear's cost does
        not depend on it.
        """
        k = self.kept_rank
        bias = self.out_features if self.bias is not None else 0
        return 2 * k * (self.in_features + self.out_features) + k + bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class FactorizedEmbedding(_Factors):
    """An embedding stored as U (num, r), d (r), V (r, dim): row i = (U[i] * d) @ V."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        rank: int,
        padding_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self._init_factors(num_embeddings, embedding_dim, rank, device, dtype)

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> FactorizedEmbedding:
        """Factorize `emb` at full rank.

        Raises:
            PrunekitError: an embedding with max_norm or sparse gradients.
        """
        if emb.max_norm is not None or emb.sparse:
            raise PrunekitError(
                "method=factorized cannot factorize an nn.Embedding with max_norm or sparse=True: "
                "exclude it from the scope"
            )
        w = emb.weight
        m = cls(emb.num_embeddings, emb.embedding_dim, min(w.shape), emb.padding_idx, w.device)
        m._set_factors(*_svd(w))
        return m

    def forward(self, idx: Tensor) -> Tensor:
        """idx (...) token ids -> (..., dim)."""
        h = F.embedding(idx, self.U, self.padding_idx) * self.d  # (..., r)
        return h @ self.V  # (..., dim)

    def flops_per_token(self, context_len: int = 1) -> int:
        """FLOPs per token at the kept rank k: 2k * dim + k (the lookup itself is free)."""
        k = self.kept_rank
        return 2 * k * self.embedding_dim + k

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}"


FACTORIZED_TYPES = (FactorizedLinear, FactorizedEmbedding)
