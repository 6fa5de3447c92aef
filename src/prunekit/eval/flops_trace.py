"""FLOPs of one concrete call, counted as it runs: any model, any input, compact layers included.

`call_flops(model, fn)` runs `fn()` (which calls `model`) and adds up:

- every layer `prunekit.eval.flops` knows (nn.Linear, Hugging Face Conv1D, convolutions, LSTM /
  GRU, embeddings, LayerNorm, and every compact layer with its own `flops_per_token`: low-rank,
  CSR (2 per stored weight), int8, sliced, LinearRNN), times the rows it was called on (tokens x
  batch; output positions for a convolution), counting only the outermost such layer;
- matrix products outside those layers (attention: `matmul`, `bmm`, `baddbmm`,
  `scaled_dot_product_attention`), 2 per multiply-add.

Elementwise work (activations, softmax, residual adds) is not counted, as in `prunekit.eval.flops`.
Speed-ups are compared with the ratio of these counts for the same call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from prunekit.eval.flops import _own_method, _registered, flops_per_token

_MATMULS = {torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.bmm, torch.baddbmm}


def _matmul_flops(func: Any, args: tuple, kwargs: dict) -> int:
    """2 x multiply-adds of a batched matrix product or of scaled-dot-product attention."""
    if func is F.scaled_dot_product_attention:
        q, k = args[0], args[1]  # (..., T, D), (..., S, D)
        return 4 * math.prod(q.shape[:-1]) * k.shape[-2] * q.shape[-1]
    if func not in _MATMULS:
        return 0
    a, b = (args[1], args[2]) if func is torch.baddbmm else (args[0], args[1])
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.dim() < 2 or b.dim() < 2:
        return 0
    batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    return 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


class _Counter(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.depth, self.total = 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth == 0:
            self.total += _matmul_flops(func, args, kwargs)
        return func(*args, **kwargs)


def _rows(module: nn.Module, x: Any, out: Any) -> int:
    if isinstance(module, nn.Conv1d | nn.Conv2d) and isinstance(out, Tensor):
        return out.numel() // out.shape[1]  # output positions (x batch)
    if isinstance(x, Tensor) and x.dim() >= 1 and x.shape[-1] > 0:
        return x.numel() // x.shape[-1]
    return 0


def call_flops(model: nn.Module, fn: Callable[[], object]) -> int:
    """FLOPs of `fn()` (a call of `model`), counted as described in the module docstring."""
    counter = _Counter()
    counted = [m for m in model.modules() if _own_method(m) or _registered(m)]

    def pre(module: nn.Module, args: tuple) -> None:
        counter.depth += 1

    def post(module: nn.Module, args: tuple, out: Any) -> None:
        counter.depth -= 1
        if counter.depth == 0:
            rows = _rows(module, args[0] if args else None, out)
            counter.total += rows * flops_per_token(module, 1)

    handles = [m.register_forward_pre_hook(pre) for m in counted]
    handles += [m.register_forward_hook(post) for m in counted]
    try:
        with counter:
            fn()
    finally:
        for h in handles:
            h.remove()
    return counter.total
