"""Byte quantization and integer-only inference of FastRNN / FastGRNN classifiers (seed 002):
`quantize_kws` (EdgeML's scheme), `int_forward` (numpy integers), `export_c` (a C header and the
reference C implementation, bit-equal to `int_forward`), sizes as the paper counts them."""

from prunekit.quant.byteq import QuantFastKWS, dequantized, quantize_kws
from prunekit.quant.c_export import compile_c, export_c, run_c, time_c
from prunekit.quant.integer import dequantize_logits, int_forward, int_predict
from prunekit.quant.io import load_quantized, save_quantized
from prunekit.quant.size import c_size_bytes, float_size_bytes, paper_size_bytes

__all__ = [
    "QuantFastKWS",
    "c_size_bytes",
    "compile_c",
    "dequantize_logits",
    "dequantized",
    "export_c",
    "float_size_bytes",
    "int_forward",
    "int_predict",
    "load_quantized",
    "paper_size_bytes",
    "quantize_kws",
    "run_c",
    "save_quantized",
    "time_c",
]
