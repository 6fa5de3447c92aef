"""Factorized layers for rank pruning (seed 004 §3.2.3): W = U diag(d) V with a mask over d.

`FactorizedLinear.from_linear(lin)` stores the SVD of W (out x in): U (out x r), d (r), V (r x in),
r = min(out, in), so at full rank it reproduces the Linear. The pruner masks d like any other
tensor (a `Mask` parametrization, so `self.d` is d * m); a pruned rank removes a column of U and a
row of V, and export keeps two thin matrices of the kept ranks (d folds into U).

Embeddings are factorized the same way (`FactorizedEmbedding`, W (V x dim) = U diag(d) V). A weight
tied between an embedding and the output Linear becomes one set of factors shared by a
`FactorizedEmbedding` and a `FactorizedLinear`, so it stays tied. Hugging Face's `Conv1D` (a
Linear storing W transposed) becomes a `FactorizedLinear` of W (`from_conv1d`). A convolution
(groups=1) is factorized over W viewed as (out, in x kernel) (`FactorizedConv`): a conv of rank
r (V as r filters), a per-rank scale d and a 1 x 1 conv (U), which is the same map.
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
    def from_conv1d(cls, conv1d: nn.Module) -> FactorizedLinear:
        """Factorize Hugging Face's `Conv1D` (weight (in, out), y = x W + b) at full rank."""
        w = conv1d.weight.t()  # (out, in)
        m = cls(w.shape[1], w.shape[0], min(w.shape), bias=False, device=w.device)
        m._set_factors(*_svd(w))
        m.bias = conv1d.bias
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


class FactorizedConv(_Factors):
    """A Conv1d / Conv2d (groups=1) stored as U (out, r), d (r), V (r, in x prod(kernel)).

    forward: h = conv(x, V as r filters (r, in, *kernel)) * d, then y = conv1x1(h, U) + bias,
    with the original stride, padding and dilation on the first conv.
    """

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, rank: int):
        """Args: conv: the layer whose hyper-parameters (not weights) are copied; rank r."""
        super().__init__()
        self.dims = 1 if isinstance(conv, nn.Conv1d) else 2
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.stride, self.padding = tuple(conv.stride), conv.padding
        self.dilation = tuple(conv.dilation)
        w = conv.weight
        b = int(w[0].numel())
        self._init_factors(self.out_channels, b, rank, w.device, w.dtype)
        self.bias = conv.bias

    @classmethod
    def from_conv(cls, conv: nn.Conv1d | nn.Conv2d) -> FactorizedConv:
        """Factorize `conv` at full rank (its bias Parameter is reused).

        Raises:
            PrunekitError: a grouped conv or one with a non-zero padding_mode.
        """
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise PrunekitError(
                "method=factorized needs convolutions with groups=1 and padding_mode='zeros': "
                "exclude this one"
            )
        w = conv.weight.reshape(conv.out_channels, -1)  # (out, in * prod(kernel))
        m = cls(conv, min(w.shape))
        m._set_factors(*_svd(w))
        return m

    def _conv(self, x: Tensor, w: Tensor, bias: Tensor | None, first: bool) -> Tensor:
        f = F.conv1d if self.dims == 1 else F.conv2d
        if not first:
            return f(x, w, bias)
        return f(x, w, bias, self.stride, self.padding, self.dilation)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, in, *spatial) -> (B, out, *spatial')."""
        ones = (1,) * self.dims
        filters = self.V.reshape(self.rank, self.in_channels, *self.kernel_size)  # (r, in, *k)
        h = self._conv(x, filters, None, True) * self.d.view(1, -1, *ones)  # (B, r, *s')
        return self._conv(h, self.U.reshape(self.out_channels, self.rank, *ones), self.bias, False)

    def flops_per_token(self, context_len: int = 1) -> int:
        """FLOPs per output position at the kept rank k: 2k (in x kernel + out) + k (+ bias)."""
        k = self.kept_rank
        bias = self.out_channels if self.bias is not None else 0
        return 2 * k * (int(self.V.shape[1]) + self.out_channels) + k + bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, rank={self.rank}"
        )


FACTORIZED_TYPES = (FactorizedLinear, FactorizedEmbedding, FactorizedConv)
