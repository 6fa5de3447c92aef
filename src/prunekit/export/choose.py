"""Dense or CSR? Decide per layer by timing both on this CPU, never by sparsity alone.

Unstructured sparsity only pays when the sparse kernel beats the dense GEMM at the batch size that
will be served; the break-even sparsity depends on the layer shape, the batch, the thread count and
the CPU. `choose_linear` times both and keeps dense unless CSR is measurably faster, so a
"compressed" model is never slower than its dense baseline layer by layer.

Timings are hot (the same layer called in a loop, its weights in cache) or `cold`: each call
goes to the next of enough copies of the layer that their weights exceed `COLD_BYTES`, so every
call reads its weights from memory, as a decode step of a model larger than the CPU's caches does.
Hot timing favours dense layers that fit in cache; `compact` times cold for models larger than
`COLD_BYTES / 2`.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.export.fast_dense import DenseLayout, fastest_dense
from prunekit.export.layers import DenseLinear, SparseLinear
from prunekit.export.replace import replace_modules
from prunekit.export.timing import check_positive_int, median_us, num_threads

DEFAULT_SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98)
COLD_BYTES = 64 * 2**20  # twice the 32 MiB L3 of the dev box's EPYC
MAX_COPIES = 64


def _tensor_bytes(value: object) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, tuple | list):  # e.g. the (weight, bias) of int8 packed params
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _bytes(layer: nn.Module) -> int:
    return sum(_tensor_bytes(v) for v in layer.state_dict().values())


def outgrows_cache(model: nn.Module) -> bool:
    """Whether `model`'s tensors exceed COLD_BYTES / 2: its weights cannot stay cached from one
    token to the next, so its layers are timed cold."""
    return _bytes(model) > COLD_BYTES / 2


def timed_call(layer: nn.Module, x: Tensor, *, cold: bool = False) -> Callable[[], object]:
    """A zero-argument call of `layer(x)`; with `cold`, each call runs the next of
    ceil(COLD_BYTES / layer bytes) copies (at most MAX_COPIES), so its weights come from memory."""
    if not cold:
        return lambda: layer(x)
    n = min(MAX_COPIES, max(1, math.ceil(COLD_BYTES / max(_bytes(layer), 1))))
    layers = itertools.cycle([layer] + [copy.deepcopy(layer) for _ in range(n - 1)])
    return lambda: next(layers)(x)


def weight_sparsity(weight: Tensor) -> float:
    """Fraction of exact zeros in `weight`."""
    return 1.0 - int(torch.count_nonzero(weight.detach())) / weight.numel()


def _input(in_features: int, batch_size: int, like: Tensor) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, in_features, generator=g).to(like)


def choose_linear(
    linear: nn.Module,
    *,
    batch_size: int = 1,
    threads: int = 1,
    repeats: int = 20,
    min_speedup: float = 1.05,
    cold: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Time `DenseLinear` vs `SparseLinear` of `linear` at `batch_size` rows; return the faster.

    CSR is chosen only if its median time beats dense by `min_speedup` (timing noise and the
    bigger CSR storage at low sparsity argue for dense on a tie). For an nn.Linear both dense
    layouts of `DenseLinear` are timed and the faster one stands for dense (a DenseLinear is timed
    as it is). A layer without zeros is dense without timing CSR.

    Args:
        linear: an nn.Linear (or any layer with `.weight` (out, in) and `.bias`).
        batch_size: rows per call, e.g. 1 for incremental decoding.
        threads: torch threads during the timing.
        repeats: interleaved samples per kernel (medians compared).
        min_speedup: dense_us / sparse_us needed to pick CSR.
        cold: time with the weights out of cache (see the module docstring).

    Returns:
        (module, record) with record keys kind ("dense" or "sparse"), sparsity, dense_us (µs per
        call, median), sparse_us (None if not timed), ratio (dense_us / sparse_us, None if not
        timed), dense_layout ("transposed" or "rows"), shape [out, in], batch_size, threads, cold.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("repeats", repeats)
    weight = linear.weight.detach()
    if weight.dim() != 2:
        raise PrunekitError(
            f"choose_linear needs a 2-D (out, in) weight, got {tuple(weight.shape)}: "
            "pass an nn.Linear"
        )
    sparsity = weight_sparsity(weight)
    if isinstance(linear, DenseLinear):
        dense_layers = {"dense": linear}
    else:  # compare CSR with the faster of both dense layouts
        dense_layers = {
            "dense": DenseLinear.from_linear(linear, transposed=True),
            "dense_rows": DenseLinear.from_linear(linear, transposed=False),
        }
    x = _input(weight.size(1), batch_size, weight)
    candidates = {k: timed_call(m, x, cold=cold) for k, m in dense_layers.items()}
    record: dict[str, Any] = {
        "kind": "dense",
        "sparsity": sparsity,
        "dense_us": None,
        "sparse_us": None,
        "ratio": None,
        "shape": [weight.size(0), weight.size(1)],
        "batch_size": batch_size,
        "threads": threads,
        "cold": cold,
    }
    sparse = None
    if sparsity > 0.0:
        sparse = SparseLinear.from_linear(linear)
        candidates["sparse"] = timed_call(sparse, x, cold=cold)
    with num_threads(threads):
        t = median_us(candidates, repeats=repeats)
    best = min(dense_layers, key=lambda k: t[k])
    dense = dense_layers[best]
    record["dense_us"] = t[best]
    record["dense_layout"] = "transposed" if dense.transposed else "rows"
    if sparse is None:
        return dense, record
    ratio = t[best] / t["sparse"]
    record.update(sparse_us=t["sparse"], ratio=ratio)
    if ratio >= min_speedup:
        record["kind"] = "sparse"
        return sparse, record
    return dense, record


def sparse_speedup_curve(
    out_features: int,
    in_features: int,
    batch_size: int = 1,
    threads: int = 1,
    *,
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES,
    repeats: int = 10,
    seed: int = 0,
    cold: bool = False,
) -> dict[float, float]:
    """dense_us / sparse_us of a random (out, in) layer at each sparsity (> 1: CSR is faster).

    All kernels (both dense layouts, one CSR per sparsity with random unstructured zeros) are
    timed interleaved in one run at `batch_size` rows and `threads` threads (hot or `cold`, see
    the module docstring); dense_us is the faster dense layout's median.
    """
    check_positive_int("out_features", out_features)
    check_positive_int("in_features", in_features)
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise PrunekitError(f"sparsity {s} must be in [0, 1): pass e.g. (0.5, 0.9)")
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(in_features, out_features)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(out_features, in_features, generator=g))
    x = _input(in_features, batch_size, lin.weight)
    dense_t = DenseLinear.from_linear(lin, transposed=True)
    dense_rows = DenseLinear.from_linear(lin, transposed=False)
    candidates = {"dense": timed_call(dense_t, x, cold=cold),
                  "dense_rows": timed_call(dense_rows, x, cold=cold)}  # fmt: skip
    for s in sparsities:
        pruned = copy.deepcopy(lin)
        with torch.no_grad():
            pruned.weight[torch.rand(pruned.weight.shape, generator=g) < s] = 0.0
        layer = SparseLinear.from_linear(pruned)
        candidates[str(s)] = timed_call(layer, x, cold=cold)
    with num_threads(threads):
        t = median_us(candidates, repeats=repeats)
    dense_us = min(t["dense"], t["dense_rows"])
    return {s: dense_us / t[str(s)] for s in sparsities}


def sparse_break_even(
    out_features: int,
    in_features: int,
    batch_size: int = 1,
    threads: int = 1,
    *,
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES,
    repeats: int = 10,
    seed: int = 0,
    cold: bool = False,
) -> float:
    """Lowest sparsity on the grid from which CSR beats dense for this shape (measured here).

    That is the smallest grid sparsity s such that CSR is faster at s and at every higher grid
    point (so one lucky sample does not count).

    Returns:
        That sparsity, or 1.0 if CSR never wins on the grid.
    """
    curve = sparse_speedup_curve(
        out_features, in_features, batch_size, threads,
        sparsities=tuple(sorted(sparsities)), repeats=repeats, seed=seed, cold=cold,
    )  # fmt: skip
    best = 1.0
    for s in sorted(curve, reverse=True):
        if curve[s] <= 1.0:
            break
        best = s
    return best


def choose_linears(
    model: nn.Module,
    *,
    batch_size: int = 1,
    threads: int = 1,
    repeats: int = 20,
    dense_layout: DenseLayout = "auto",
    rnn_onednn: bool | None = None,
) -> tuple[nn.Module, dict[str, dict[str, Any]]]:
    """`fastest_dense(model)` with every Linear that has zeros timed by `choose_linear`.

    Args:
        model: a (pruned, finalized or masked) fp32 model; not modified.
        batch_size, threads, repeats: as in `choose_linear`.
        dense_layout, rnn_onednn: as in `fastest_dense`.

    Returns:
        (converted copy in eval mode, {layer name: choose_linear record} for the timed layers).
    """
    new = fastest_dense(
        model,
        dense_layout=dense_layout,
        rnn_onednn=rnn_onednn,
        batch_size=batch_size,
        threads=threads,
    )
    records: dict[str, dict[str, Any]] = {}

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if not isinstance(m, DenseLinear) or weight_sparsity(m.weight) == 0.0:
            return None
        layer, records[name] = choose_linear(
            m, batch_size=batch_size, threads=threads, repeats=repeats
        )
        return layer

    replace_modules(new, convert)
    return new, records
