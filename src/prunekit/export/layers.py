"""Compact inference layers: drop-in replacements of `nn.Linear` that compute the same map faster.

Every layer takes (..., in) and returns (..., out), reproduces the dense math of the Linear it came
from (fp32 layers to float rounding; int8 layers to quantization error) and reports its true cost
through `flops_per_token(context_len)` (one multiply-add = 2 FLOPs, see prunekit.eval.flops).
They are inference-only: weights are stored with `requires_grad=False`.

- `DenseLinear`: weight stored pre-transposed (in, out) for one `addmm` (faster than `F.linear`'s
  transposed GEMM at small batch on some BLAS builds), or as (out, in) for `F.linear`.
- `LowRankLinear`: W = U V kept as two thin pre-transposed matrices.
- `SparseLinear`: CSR weight with int32 indices; `addmv` for one row, `addmm` otherwise.
- `Int8Linear`: torch's dynamic int8 kernel (fbgemm/x86) with per-output-channel symmetric
  weights, so exact zeros stay exactly zero; `Int8LowRankLinear` quantizes both factors.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
import torch.ao.nn.quantized.dynamic as qd
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError


def _frozen(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().contiguous(), requires_grad=False)


def _bias_of(linear: nn.Module) -> Tensor | None:
    b = getattr(linear, "bias", None)
    return None if b is None else b.detach()


def _as_2d(x: Tensor, in_features: int) -> Tensor:
    """x (..., in) -> (N, in) with N the product of the leading dims."""
    if x.size(-1) != in_features:
        raise PrunekitError(
            f"input has {x.size(-1)} features but the layer expects {in_features}: "
            "feed (..., in_features) activations"
        )
    return x if x.dim() == 2 else x.reshape(-1, in_features)


def _restore(y: Tensor, x: Tensor) -> Tensor:
    """y (N, out) -> (..., out) with the leading dims of x."""
    return y if x.dim() == 2 else y.view(*x.shape[:-1], y.size(-1))


def _bias_flops(bias: Tensor | None, out_features: int) -> int:
    return out_features if bias is not None else 0


class DenseLinear(nn.Module):
    """y = x @ W.T + b on a contiguous weight in the layout that is faster for this layer.

    `transposed=True` (default) stores W pre-transposed as `weight_t` (in, out) and runs one
    `addmm`; `transposed=False` stores `weight_rows` (out, in) and runs `F.linear` (a GEMV for
    one row). Which is faster depends on the shape, the batch and the BLAS build, so
    `fastest_dense(dense_layout="auto")` times both per layer.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, *, transposed: bool = True):
        """Args: weight (out, in); bias (out) or None; transposed: the stored layout."""
        super().__init__()
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.transposed = transposed
        if transposed:
            self.weight_t = _frozen(weight.detach().t())  # (in, out)
        else:
            self.weight_rows = _frozen(weight)  # (out, in)
        self.bias = None if bias is None else _frozen(bias)

    @classmethod
    def from_linear(cls, linear: nn.Module, *, transposed: bool = True) -> DenseLinear:
        """Copy `linear` (its masked weight if it is parametrized) into the chosen layout."""
        return cls(linear.weight.detach(), _bias_of(linear), transposed=transposed)

    @property
    def weight(self) -> Tensor:
        """The (out, in) weight (a transposed view in the transposed layout)."""
        return self.weight_t.t() if self.transposed else self.weight_rows

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out)."""
        if not self.transposed:
            return F.linear(x, self.weight_rows, self.bias)
        x2 = _as_2d(x, self.in_features)
        if self.bias is None:
            return _restore(torch.mm(x2, self.weight_t), x)
        return _restore(torch.addmm(self.bias, x2, self.weight_t), x)

    def flops_per_token(self, context_len: int = 1) -> int:
        """2 * in * out (+ out for the bias); `context_len` is unused."""
        return 2 * self.in_features * self.out_features + _bias_flops(self.bias, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"transposed={self.transposed}"
        )


class LowRankLinear(nn.Module):
    """y = (x @ V.T) @ U.T + b with U (out, r) and V (r, in) stored pre-transposed."""

    def __init__(self, U: Tensor, V: Tensor, bias: Tensor | None):
        """Args: U (out, r); V (r, in); bias (out) or None.

        Raises:
            PrunekitError: U and V disagree on the rank.
        """
        super().__init__()
        if U.dim() != 2 or V.dim() != 2 or U.shape[1] != V.shape[0]:
            raise PrunekitError(
                f"LowRankLinear got U {tuple(U.shape)} and V {tuple(V.shape)}: "
                "pass U (out, r) and V (r, in) with the same r"
            )
        self.out_features, self.rank = int(U.shape[0]), int(U.shape[1])
        self.in_features = int(V.shape[1])
        self.V_t = _frozen(V.detach().t())  # (in, r)
        self.U_t = _frozen(U.detach().t())  # (r, out)
        self.bias = None if bias is None else _frozen(bias)

    @classmethod
    def from_factors(cls, U: Tensor, V: Tensor, bias: Tensor | None) -> LowRankLinear:
        """Build from factors U (out, r), V (r, in) and bias (out) or None (all copied)."""
        return cls(U, V, bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """Truncated SVD of `linear.weight` keeping the `rank` largest singular values.

        Raises:
            PrunekitError: rank outside 1..min(out, in).
        """
        w = linear.weight.detach()
        if not 1 <= rank <= min(w.shape):
            raise PrunekitError(
                f"rank={rank} must be between 1 and {min(w.shape)} for a {tuple(w.shape)} weight: "
                "pick a smaller rank"
            )
        u, s, vh = torch.linalg.svd(w.to(torch.float64), full_matrices=False)
        U = (u[:, :rank] * s[:rank]).to(w.dtype)
        return cls(U, vh[:rank].to(w.dtype), _bias_of(linear))

    @property
    def U(self) -> Tensor:
        """Left factor (out, r), a transposed view."""
        return self.U_t.t()

    @property
    def V(self) -> Tensor:
        """Right factor (r, in), a transposed view."""
        return self.V_t.t()

    @property
    def weight(self) -> Tensor:
        """The dense (out, in) product U V, recomputed."""
        return self.U @ self.V

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out) with two thin matmuls through rank r."""
        h = torch.mm(_as_2d(x, self.in_features), self.V_t)  # (N, r)
        if self.bias is None:
            return _restore(torch.mm(h, self.U_t), x)
        return _restore(torch.addmm(self.bias, h, self.U_t), x)

    def flops_per_token(self, context_len: int = 1) -> int:
        """2 r (in + out) (+ out for the bias); `context_len` is unused."""
        core = 2 * self.rank * (self.in_features + self.out_features)
        return core + _bias_flops(self.bias, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class SparseLinear(nn.Module):
    """y = W x + b with W in CSR form (int32 row pointers and column indices, fp32 values).

    The CSR parts are stored as `values` (a frozen Parameter, nnz), `crow_indices` (out + 1) and
    `col_indices` (nnz) so `state_dict`, `.to()` and prunekit.eval.size work on plain tensors; the
    CSR tensor viewing them is rebuilt whenever they move.
    """

    def __init__(self, crow_indices: Tensor, col_indices: Tensor, values: Tensor, shape, bias):
        """Args: crow_indices (out + 1); col_indices (nnz); values (nnz); shape (out, in);
        bias (out) or None. Indices are stored as int32."""
        super().__init__()
        self.out_features, self.in_features = int(shape[0]), int(shape[1])
        self.register_buffer("crow_indices", crow_indices.detach().to(torch.int32).contiguous())
        self.register_buffer("col_indices", col_indices.detach().to(torch.int32).contiguous())
        self.values = _frozen(values)
        self.bias = None if bias is None else _frozen(bias)
        self._csr: Tensor | None = None
        self._csr_key: tuple[int, ...] = ()

    @classmethod
    def from_linear(cls, linear: nn.Module) -> SparseLinear:
        """CSR copy of `linear.weight` (out, in) keeping exactly its nonzero entries."""
        w = linear.weight.detach()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            csr = w.to_sparse_csr()
        return cls(csr.crow_indices(), csr.col_indices(), csr.values(), w.shape, _bias_of(linear))

    @property
    def nnz(self) -> int:
        """Number of stored (nonzero) weights."""
        return int(self.values.numel())

    @property
    def sparsity(self) -> float:
        """Fraction of the (out, in) weight that is not stored."""
        return 1.0 - self.nnz / (self.out_features * self.in_features)

    @property
    def csr(self) -> Tensor:
        """The (out, in) sparse CSR weight viewing the stored parts."""
        key = (
            self.values.data_ptr(),
            self.crow_indices.data_ptr(),
            self.col_indices.data_ptr(),
            self.values.device.index or 0,
        )
        if self._csr is None or key != self._csr_key:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                self._csr = torch.sparse_csr_tensor(
                    self.crow_indices,
                    self.col_indices,
                    self.values.detach(),
                    (self.out_features, self.in_features),
                    dtype=self.values.dtype,
                    device=self.values.device,
                )
            self._csr_key = key
        return self._csr

    @property
    def weight(self) -> Tensor:
        """The dense (out, in) weight with its zeros, materialized."""
        return self.csr.to_dense()

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out): sparse W times x.T (addmv for a single row)."""
        x2 = _as_2d(x, self.in_features)
        w = self.csr
        if x2.size(0) == 1:
            y = torch.mv(w, x2[0]) if self.bias is None else torch.addmv(self.bias, w, x2[0])
            return _restore(y.unsqueeze(0), x)
        if self.bias is None:
            return _restore(torch.mm(w, x2.t()).t(), x)
        return _restore(torch.addmm(self.bias.unsqueeze(1), w, x2.t()).t(), x)

    def flops_per_token(self, context_len: int = 1) -> int:
        """2 * nnz (+ out for the bias); `context_len` is unused."""
        return 2 * self.nnz + _bias_flops(self.bias, self.out_features)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_csr"], state["_csr_key"] = None, ()  # rebuilt from the parts on first use
        return state

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, sparsity={self.sparsity:.3f}"
        )


@contextlib.contextmanager
def quiet_quantization() -> Iterator[None]:
    """Silence torch 2.13's deprecation warnings of its eager quantization stack.

    torch marks quantized-tensor creation (pytorch#184982) and `torch.ao.quantization` (moving to
    torchao, pytorch/ao#2259) deprecated; the dynamic int8 kernels used here still work and still
    need both. Revisit when torch drops them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_.*deprecated.*")
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        yield


def quantize_weight_int8(weight: Tensor) -> Tensor:
    """Per-output-channel symmetric qint8 copy of `weight` (out, in): zero stays exactly 0.

    Each row's scale is max|w_row| / 127 (1.0 for an all-zero row) and its zero point 0.
    """
    w = weight.detach().float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).double()
    zero_point = torch.zeros(w.size(0), dtype=torch.long)
    with quiet_quantization():
        return torch.quantize_per_channel(w, scale, zero_point, 0, torch.qint8)


class Int8Linear(qd.Linear):
    """Dynamic int8 Linear: int8 weights (per-channel symmetric), activations quantized per call.

    Uses torch's `quantized::linear_dynamic` kernel (fbgemm/x86 engine, 7-bit activation range as
    in `torch.ao.nn.quantized.dynamic.Linear`); inputs and outputs are fp32 (..., in) -> (..., out).
    """

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None) -> Int8Linear:
        """Quantize weight (out, in) and keep bias (out) or None in fp32."""
        out_features, in_features = weight.shape
        with quiet_quantization():
            m = cls(in_features, out_features, bias_=bias is not None, dtype=torch.qint8)
        b = None if bias is None else bias.detach().float().contiguous()
        m.set_weight_bias(quantize_weight_int8(weight), b)
        return m

    @classmethod
    def from_linear(cls, linear: nn.Module) -> Int8Linear:
        """Quantize any layer with a dense `.weight` (out, in) and `.bias` (nn.Linear, DenseLinear,
        SparseLinear)."""
        return cls.from_weight(linear.weight.detach(), _bias_of(linear))

    def dequantized_weight(self) -> Tensor:
        """The fp32 (out, in) weight the kernel really uses."""
        return self.weight().dequantize()

    def flops_per_token(self, context_len: int = 1) -> int:
        """2 * in * out (+ out for the bias), the same count as fp32: int8 makes each op cheaper,
        not fewer."""
        return 2 * self.in_features * self.out_features + _bias_flops(
            self.bias(), self.out_features
        )

    def _get_name(self) -> str:
        return "Int8Linear"


class Int8LowRankLinear(nn.Module):
    """A `LowRankLinear` with both thin factors int8: `second(first(x))`, rank unchanged."""

    def __init__(self, first: Int8Linear, second: Int8Linear):
        """Args: first maps in -> r (no bias); second maps r -> out (with the bias)."""
        super().__init__()
        self.first, self.second = first, second
        self.in_features, self.rank = first.in_features, first.out_features
        self.out_features = second.out_features

    @classmethod
    def from_low_rank(cls, layer: LowRankLinear) -> Int8LowRankLinear:
        """Quantize V (r, in) and U (out, r) of `layer` separately."""
        return cls(
            Int8Linear.from_weight(layer.V, None), Int8Linear.from_weight(layer.U, layer.bias)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out) through rank r."""
        return self.second(self.first(x))

    def flops_per_token(self, context_len: int = 1) -> int:
        """2 r (in + out) (+ out for the bias)."""
        return self.first.flops_per_token() + self.second.flops_per_token()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


COMPACT_LINEAR_TYPES = (DenseLinear, LowRankLinear, SparseLinear, Int8Linear, Int8LowRankLinear)
