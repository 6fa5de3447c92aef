"""Compact-export runtime: inference layers that make compressed models really faster on CPU.

- `layers`: DenseLinear, LowRankLinear, SparseLinear (int32 CSR), Int8Linear, Int8LowRankLinear;
- `choose`: time dense vs CSR per layer (`choose_linear`, `sparse_break_even`, `choose_linears`);
- `fast_dense`: `fastest_dense(model)`, the honest dense baseline;
- `quantize`: `quantize_int8` (composes with low-rank and pruning) and the peer `torch_dynamic_int8`;
- `size`: `compact_size_report` (counts packed int8 weights);
- `onnx_export`: `export_onnx`, `check_onnx`, `onnx_ready`;
- `compact`: `prunekit.export.compact.compact(model)` turns a pruned model into a plain,
  physically smaller one (`conv1d`: Hugging Face Conv1D as nn.Linear; `shrink`: heads / FFN
  units / LSTM-GRU units / rows-cols; `shrink_channels`: conv channels, embedding columns;
  `sliced`: SlicedLinear, LowRankEmbedding, SlicedEmbedding, TiedEmbedding, LowRankConv; `ties`:
  tied embeddings stored once; `linear_rnn`: LinearRNN with CSR gate matrices, CompactRNNLM);
  `quantize_compact` adds int8. It imports the pruning code, so it is not imported here:
  loading an export needs none of it;
- `io`: `save_compact` / `load_compact` (weights.safetensors + manifest.json, see `manifest`,
  `records` and `records_torch`), any model: `load_compact(folder, model=...)` for one prunekit
  did not build;
- `hf_pretrained`: `save_pretrained` for Hugging Face's `from_pretrained`, where the config can
  express the compact shapes.
"""

from prunekit.export.choose import (
    choose_linear,
    choose_linears,
    sparse_break_even,
    sparse_speedup_curve,
    weight_sparsity,
)
from prunekit.export.fast_dense import OneDnnOffGRU, OneDnnOffLSTM, fastest_dense
from prunekit.export.io import load_compact, read_manifest, save_compact
from prunekit.export.layers import (
    DenseLinear,
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    SparseLinear,
)
from prunekit.export.linear_rnn import CompactRNNLM, LinearRNN
from prunekit.export.quantize import QuantizedRNNLM, quantize_int8, torch_dynamic_int8
from prunekit.export.size import compact_size_report
from prunekit.export.sliced import LowRankEmbedding, SlicedLinear

__all__ = [
    "CompactRNNLM",
    "DenseLinear",
    "Int8Linear",
    "Int8LowRankLinear",
    "LinearRNN",
    "LowRankEmbedding",
    "LowRankLinear",
    "OneDnnOffGRU",
    "OneDnnOffLSTM",
    "QuantizedRNNLM",
    "SlicedLinear",
    "SparseLinear",
    "choose_linear",
    "choose_linears",
    "compact_size_report",
    "fastest_dense",
    "load_compact",
    "quantize_int8",
    "read_manifest",
    "save_compact",
    "sparse_break_even",
    "sparse_speedup_curve",
    "torch_dynamic_int8",
    "weight_sparsity",
]
