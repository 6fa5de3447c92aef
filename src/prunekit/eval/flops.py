"""Analytic inference FLOPs per token; one multiply-add counts as 2 FLOPs.

How a module is counted, first match wins:

1. its own method `flops_per_token(self, context_len) -> int` (its children are not walked again,
   so compressed layers can report their true cost);
2. a function registered for its class (or a base class) with `@register_flops(cls)`;
3. otherwise the sum over its children (parameter-free leaves such as activations or dropout
   count 0).

`context_len` is the average number of tokens each token attends to. Incremental decoding of
token t (0-based) attends t + 1 tokens, so over a window of T tokens the mean context is
(T + 1) / 2 (pass an integer, e.g. `(T + 1) // 2`). Only attention depends on it.

Only the matrix products, bias adds, LayerNorm and RNN gate arithmetic are counted; residual adds,
softmax and feed-forward activations are O(d) per token and ignored. A convolution counts per
output position (its own "token"); Hugging Face's `Conv1D` counts as the Linear it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from prunekit.errors import PrunekitError

FlopsFn = Callable[[nn.Module, int], int]

_REGISTRY: dict[type[nn.Module], FlopsFn] = {}


def register_flops(module_type: type[nn.Module]) -> Callable[[FlopsFn], FlopsFn]:
    """Decorator: count modules of `module_type` (and subclasses) with `fn(module, context_len)`."""

    def decorate(fn: FlopsFn) -> FlopsFn:
        _REGISTRY[module_type] = fn
        return fn

    return decorate


def _registered(module: nn.Module) -> FlopsFn | None:
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return _hf_conv1d  # Hugging Face's transposed Linear, without importing transformers
    return None


def _hf_conv1d(m: nn.Module, context_len: int) -> int:
    n_in, n_out = m.weight.shape  # (in, out)
    return 2 * int(n_in) * int(n_out) + (int(n_out) if m.bias is not None else 0)


def _own_method(module: nn.Module) -> Callable[[int], int] | None:
    method = getattr(type(module), "flops_per_token", None)
    return module.flops_per_token if callable(method) else None


def flops_per_token(model: nn.Module, context_len: int) -> int:
    """Inference FLOPs to process one token with `context_len` tokens of attended context."""
    if isinstance(context_len, bool) or not isinstance(context_len, int) or context_len < 1:
        raise PrunekitError(
            f"context_len={context_len!r} must be an integer >= 1: for a window of T tokens "
            "pass (T + 1) // 2"
        )
    own = _own_method(model)
    if own is not None:
        return int(own(context_len))
    fn = _registered(model)
    if fn is not None:
        return int(fn(model, context_len))
    return sum(flops_per_token(child, context_len) for child in model.children())


def flops_breakdown(model: nn.Module, context_len: int) -> dict[str, int]:
    """FLOPs per token of each top-level child of `model`, by name (e.g. embed, blocks, lm_head).

    A model counted as a whole (own method or registered class) gives `{"": total}`.
    """
    if _own_method(model) is not None or _registered(model) is not None:
        return {"": flops_per_token(model, context_len)}
    return {name: flops_per_token(m, context_len) for name, m in model.named_children()}


@register_flops(nn.Linear)
def _linear(m: nn.Linear, context_len: int) -> int:
    return 2 * m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)


@register_flops(nn.Conv1d)
@register_flops(nn.Conv2d)
def _conv(m: nn.Conv1d | nn.Conv2d, context_len: int) -> int:
    """Per output position ("token" = one output frame / pixel): 2 * out * in/groups * kernel."""
    k = 1
    for n in m.kernel_size:
        k *= n
    return 2 * m.out_channels * (m.in_channels // m.groups) * k + (
        m.out_channels if m.bias is not None else 0
    )


@register_flops(nn.Embedding)
def _embedding(m: nn.Embedding, context_len: int) -> int:
    return 0  # a table lookup


@register_flops(nn.LayerNorm)
def _layer_norm(m: nn.LayerNorm, context_len: int) -> int:
    # ~5 elementwise passes over d: mean, centre, variance, normalise, affine.
    d = 1
    for n in m.normalized_shape:
        d *= n
    return 5 * d


# Per hidden unit: (gates G, elementwise ops E); each nonlinearity or elementwise op is 1 FLOP.
# LSTM: 3 sigmoid + 2 tanh, f*c, i*g, +, o*tanh(c) -> 9.
# GRU: 2 sigmoid + tanh, r*(W_hn h + b_hn), (1-z), (1-z)*n, z*h, + -> 8.
_RNN_COSTS = {"LSTM": (4, 9), "GRU": (3, 8), "RNN_TANH": (1, 1), "RNN_RELU": (1, 1)}


@register_flops(nn.RNNBase)
def _rnn(m: nn.RNNBase, context_len: int) -> int:
    """Per layer and direction: 2*G*h*(in + r) matmuls, 2*G*h bias adds, E*h gate arithmetic,
    plus 2*h*p for an LSTM projection (r = p = proj_size if set, else r = h)."""
    gates, elementwise = _RNN_COSTS[m.mode]
    h = m.hidden_size
    p = getattr(m, "proj_size", 0)
    r = p or h
    directions = 2 if m.bidirectional else 1
    total = 0
    for layer in range(m.num_layers):
        d_in = m.input_size if layer == 0 else r * directions
        per_dir = 2 * gates * h * (d_in + r) + elementwise * h
        if m.bias:
            per_dir += 2 * gates * h
        if p:
            per_dir += 2 * h * p
        total += directions * per_dir
    return total


def sparse_flops_per_token(model: nn.Module, context_len: int) -> int:
    """FLOPs per token if every exact zero in a weight matrix were skipped (2 FLOPs per zero).

    The paper's FLOP count of an unstructured-pruned model; `flops_per_token` is what a dense
    kernel executes. Only nn.Linear and RNN weight matrices are discounted (an embedding lookup
    costs no FLOPs anyway).
    """
    saved = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            names = ["weight"]
        elif isinstance(module, nn.RNNBase):
            names = [n for n in module._flat_weights_names if n.startswith("weight")]
        else:
            continue
        for name in names:
            w = getattr(module, name)
            saved += 2 * (w.numel() - int(torch.count_nonzero(w)))
    return flops_per_token(model, context_len) - saved
