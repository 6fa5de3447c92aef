"""Model size as seed 002 counts it, and as the C export really stores it.

- quantized (`paper_size_bytes`): one byte per int8 value; a matrix stored sparse (fewer than half
  its entries nonzero, at most 255 rows) costs 2 bytes per nonzero (value + byte row index, the
  paper's "byte indexing"); 4 bytes per int32 scalar (zeta, nu). Seed 002's Google-12 FastGRNN
  (100 hidden, ranks 16/25, s = 0.3) comes to 5.5 KB this way, as in its Table 1.
- C header (`c_size_bytes`): the same plus one terminating index byte per column of a sparse
  matrix (`prunekit.quant.c_export`'s layout).
- float (`float_size_bytes`): 4 bytes per parameter; a fast-cell matrix under half dense costs
  8 bytes per nonzero (value + index), EdgeML's `estimateNNZ` rule.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prunekit.models.fastgrnn import FastGRNNCell, FastRNNCell
from prunekit.prune.masks import original
from prunekit.quant.byteq import QuantFastKWS

MAX_SPARSE_ROWS = 255  # 1-based byte row indices, 0 ends a column


def is_sparse(mat: np.ndarray) -> bool:
    """Whether a matrix (out, in) is stored sparse: under half dense and at most 255 rows."""
    nnz = int(np.count_nonzero(mat))
    return mat.shape[0] <= MAX_SPARSE_ROWS and 2 * nnz < mat.size


def _matrix_bytes(mat: np.ndarray, terminators: bool) -> int:
    if not is_sparse(mat):
        return int(mat.size)
    nnz = int(np.count_nonzero(mat))
    return 2 * nnz + (mat.shape[1] if terminators else 0)


def _size(q: QuantFastKWS, terminators: bool) -> int:
    mats = sum(_matrix_bytes(m, terminators) for m in [*q.w, *q.u])
    vectors = sum(b.size for b in q.biases.values()) + q.head_w.size + q.head_b.size
    return int(mats + vectors + 4 * len(q.scalars))


def paper_size_bytes(q: QuantFastKWS) -> int:
    """Bytes of the quantized model as seed 002 counts them (see the module docstring)."""
    return _size(q, terminators=False)


def c_size_bytes(q: QuantFastKWS) -> int:
    """Bytes of the weights and scalars in the exported C header."""
    return _size(q, terminators=True)


def float_size_bytes(model: nn.Module) -> int:
    """fp32 bytes of `model`: 4 per parameter, 8 per nonzero of a sparse fast-cell matrix."""
    cell_weights: dict[int, torch.Tensor] = {}  # id(stored parameter) -> weight as used
    for cell in model.modules():
        if isinstance(cell, FastGRNNCell | FastRNNCell):
            for lin in cell.modules():
                if isinstance(lin, nn.Linear):
                    cell_weights[id(original(lin, "weight"))] = lin.weight.detach()
    total = 0
    for p in model.parameters():
        w = cell_weights.get(id(p))
        nnz = int(torch.count_nonzero(w)) if w is not None else p.numel()
        total += 8 * nnz if 2 * nnz < p.numel() else 4 * p.numel()
    return total
