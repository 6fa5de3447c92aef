"""Compact-export runtime: inference layers that make compressed models really faster on CPU.

- `layers`: DenseLinear, LowRankLinear, SparseLinear (int32 CSR), Int8Linear, Int8LowRankLinear;
- `choose`: time dense vs CSR per layer (`choose_linear`, `sparse_break_even`, `choose_linears`);
- `fast_dense`: `fastest_dense(model)`, the honest dense baseline;
- `quantize`: `quantize_int8` (composes with low-rank and pruning) and the peer `torch_dynamic_int8`;
- `size`: `compact_size_report` (counts packed int8 weights);
- `onnx_export`: `export_onnx`, `check_onnx`.
"""

from prunekit.export.choose import (
    choose_linear,
    choose_linears,
    sparse_break_even,
    sparse_speedup_curve,
    weight_sparsity,
)
from prunekit.export.fast_dense import OneDnnOffGRU, OneDnnOffLSTM, fastest_dense
from prunekit.export.layers import (
    DenseLinear,
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    SparseLinear,
)
from prunekit.export.quantize import QuantizedRNNLM, quantize_int8, torch_dynamic_int8
from prunekit.export.size import compact_size_report

__all__ = [
    "DenseLinear",
    "Int8Linear",
    "Int8LowRankLinear",
    "LowRankLinear",
    "OneDnnOffGRU",
    "OneDnnOffLSTM",
    "QuantizedRNNLM",
    "SparseLinear",
    "choose_linear",
    "choose_linears",
    "compact_size_report",
    "fastest_dense",
    "quantize_int8",
    "sparse_break_even",
    "sparse_speedup_curve",
    "torch_dynamic_int8",
    "weight_sparsity",
]
