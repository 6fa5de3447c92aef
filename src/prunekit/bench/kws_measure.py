"""What `prunekit bench kws` measures of a trained row: quality (any machine) and speed (idle only).

Quality: test accuracy, parameters, fp32 size, and for the quantized rows the integer path's
accuracy, its agreement with the float model, the byte size and whether the compiled C reference
is bit-equal to the Python integer path. Speed: median ms per 1 s clip at batch 1 on
`spec.threads` threads, of the float path (FastGRNN / FastRNN through the TorchScript runtime
`runtime.fastgrnn`, nn.RNN / GRU / LSTM as they are, EdgeML through its own `BaseRNN`), of the
eager model (our Python step loop), of the numpy integer path and of the C reference.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.bench.kws_data import KWSData
from prunekit.bench.kws_spec import KWSBenchSpec
from prunekit.errors import PrunekitError
from prunekit.eval.accuracy import accuracy_from_logits, logits_of
from prunekit.eval.size import nonzero_param_count, param_count
from prunekit.export.timing import median_us, num_threads
from prunekit.models.fastgrnn import FastRNNLayer
from prunekit.quant import (
    c_size_bytes,
    compile_c,
    export_c,
    float_size_bytes,
    int_forward,
    paper_size_bytes,
    quantize_kws,
    run_c,
    time_c,
)
from prunekit.quant.byteq import QuantFastKWS
from prunekit.runtime.fastgrnn import fast_kws

C_CHECK_CLIPS = 64
QUANTIZED = ("fastgrnn_lsq_q", "edgeml_fastgrnn")


def quality_facts(row: str, model: nn.Module, data: KWSData, spec: KWSBenchSpec) -> dict[str, Any]:
    """Accuracy and size of a trained row (and, for the quantized rows, the integer path's)."""
    model.eval()
    facts: dict[str, Any] = {
        "accuracy": accuracy_from_logits(logits_of(model, data.test_x), data.test_y),
        "dev_accuracy": accuracy_from_logits(logits_of(model, data.dev_x), data.dev_y),
        "params": param_count(model),
        "nonzero_params": nonzero_param_count(model),
        "size_kb": float_size_bytes(model) / 1024.0,
    }
    if row in QUANTIZED:
        facts.update(_integer_facts(model, data, spec))
    return facts


def quantized(model: nn.Module, data: KWSData, spec: KWSBenchSpec) -> QuantFastKWS:
    """The byte-quantized model (input scale calibrated on the training clips)."""
    return quantize_kws(model, data.train_x, act_frac=spec.act_frac)


def _integer_facts(model: nn.Module, data: KWSData, spec: KWSBenchSpec) -> dict[str, Any]:
    q = quantized(model, data, spec)
    x_int = q.quantize_input(data.test_x)
    logits, h = int_forward(q, x_int)
    float_pred = logits_of(model, data.test_x).argmax(-1).numpy()
    int_pred = logits.argmax(axis=1)
    facts: dict[str, Any] = {
        "int_accuracy": float((int_pred == data.test_y.numpy()).mean()),
        "int_float_agreement": float((int_pred == float_pred).mean()),
        "size_kb_q": paper_size_bytes(q) / 1024.0,
        "size_kb_c_header": c_size_bytes(q) / 1024.0,
        "param_scale": q.param_scale,
        "in_frac": q.in_frac,
    }
    with tempfile.TemporaryDirectory(prefix="prunekit-kws-c-") as tmp:
        try:
            exe = compile_c(export_c(q, tmp)["fastgrnn_int.c"].parent)
        except PrunekitError as exc:
            return {**facts, "c_bit_equal": None, "c_note": str(exc)}
        n = min(C_CHECK_CLIPS, len(x_int))
        c_logits, c_h = run_c(exe, x_int[:n], q.n_classes)
    same = np.array_equal(c_logits, logits[:n]) and np.array_equal(c_h, h[:n])
    return {**facts, "c_bit_equal": bool(same), "c_checked_clips": n}


def _ms_per_clip(
    forward: Callable[[torch.Tensor], object], clips: torch.Tensor, spec: KWSBenchSpec
) -> float:
    """Median ms per clip (batch 1, spec.threads threads) over `clips`, timed interleaved."""
    candidates = {str(i): (lambda c=c: forward(c[None])) for i, c in enumerate(clips)}
    with num_threads(spec.threads):
        per_clip = median_us(candidates, repeats=spec.timing_repeats)
    return statistics.median(per_clip.values()) / 1000.0


def float_path(row: str, model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The fastest float forward pass we have for a row's model, and its name."""
    if row == "edgeml_fastgrnn":
        from prunekit.bench.kws_edgeml import edgeml_forward

        return edgeml_forward(model), "EdgeML BaseRNN (eager, its own)"
    if isinstance(getattr(model, "rnn", None), FastRNNLayer):
        return fast_kws(model), "TorchScript (runtime.fastgrnn)"
    return model, f"torch nn.{type(model.rnn).__name__} (eager)"


def timing_facts(row: str, model: nn.Module, data: KWSData, spec: KWSBenchSpec) -> dict[str, Any]:
    """ms per 1 s clip at batch 1: float path, eager model, numpy integer path, C reference."""
    model.eval()
    clips = data.test_x[: spec.timing_clips]
    forward, name = float_path(row, model)
    with torch.inference_mode():
        facts: dict[str, Any] = {
            "float_ms": _ms_per_clip(forward, clips, spec),
            "float_path": name,
            "eager_ms": _ms_per_clip(model, clips, spec),
        }
    if row in QUANTIZED:
        q = quantized(model, data, spec)
        x_int = q.quantize_input(clips)
        facts["int_numpy_ms"] = _ms_per_clip(
            lambda c: int_forward(q, c.numpy(), check=False), torch.from_numpy(x_int), spec
        )
        with tempfile.TemporaryDirectory(prefix="prunekit-kws-c-") as tmp:
            try:
                exe = compile_c(export_c(q, tmp)["fastgrnn_int.c"].parent)
                facts["int_c_ms"] = time_c(exe, x_int, repeats=spec.timing_repeats) * 1000.0
            except PrunekitError as exc:
                facts["int_c_ms"], facts["c_note"] = None, str(exc)
    facts.update(threads=spec.threads, clips=len(clips), repeats=spec.timing_repeats)
    return facts
