"""`prunekit bench kws`: seed 002's Table 1 row for a keyword task, from tensors.

Rows: FastGRNN (LSQ+Q), FastGRNN-LSQ (i.e. without LSQ), FastRNN, RNN, GRU, LSTM, and EdgeML's own
FastGRNN trained on the same clips with the same hyperparameters. For each: test accuracy, size
in KB as the paper counts it, and 1-thread prediction time per clip (float; for the quantized
models also the numpy integer path and the compiled C reference). The LSQ+Q rows also report
their float accuracy, the integer path's agreement with it, and whether the C reference is
bit-equal to the Python integer path.

Each finished row is saved under `<work>/rows/<row>.json`; a rerun skips it (delete to redo).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.bench.kws_data import KWSData
from prunekit.bench.kws_spec import ROWS, KWSBenchSpec
from prunekit.errors import PrunekitError
from prunekit.eval.accuracy import accuracy_from_logits, logits_of
from prunekit.eval.size import nonzero_param_count, param_count
from prunekit.export.timing import median_us, num_threads
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

C_CHECK_CLIPS = 64


def _float_ms(
    forward: Callable[[torch.Tensor], object], clips: torch.Tensor, spec: KWSBenchSpec
) -> float:
    """Median ms per clip (batch 1, spec.threads threads) over `clips`, timed interleaved."""
    candidates = {str(i): (lambda c=c: forward(c[None])) for i, c in enumerate(clips)}
    with num_threads(spec.threads):
        per_clip = median_us(candidates, repeats=spec.timing_repeats)
    return statistics.median(per_clip.values()) / 1000.0


def _quantized_facts(
    model: nn.Module, data: KWSData, spec: KWSBenchSpec, work: Path
) -> dict[str, Any]:
    """Quantize, run the integer path on the test set, check and time the C reference."""
    q = quantize_kws(model, data.train_x, act_frac=spec.act_frac)
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
    timing = x_int[: spec.timing_clips]
    facts["int_numpy_ms"] = _float_ms(
        lambda c: int_forward(q, c.numpy(), check=False), torch.from_numpy(timing), spec
    )
    try:
        exe = compile_c(export_c(q, work / "c")["fastgrnn_int.c"].parent)
    except PrunekitError as exc:
        facts["c_bit_equal"], facts["c_note"] = None, str(exc)
        return facts
    n = min(C_CHECK_CLIPS, len(x_int))
    c_logits, c_h = run_c(exe, x_int[:n], q.n_classes)
    facts["c_bit_equal"] = bool(np.array_equal(c_logits, logits[:n]) and np.array_equal(c_h, h[:n]))
    facts["c_checked_clips"] = n
    facts["int_c_ms"] = time_c(exe, timing, repeats=spec.timing_repeats) * 1000.0
    return facts


def _common_facts(
    model: nn.Module, data: KWSData, spec: KWSBenchSpec, forward: Callable | None = None
) -> dict[str, Any]:
    """Test accuracy, parameters, fp32 size and float ms per clip; `forward` replaces the
    model's own forward pass (EdgeML's trainer) for accuracy and timing."""
    model.eval()
    if forward is None:
        forward, logits = model, logits_of(model, data.test_x)
    else:
        with torch.no_grad():
            logits = forward(data.test_x)
    return {
        "accuracy": accuracy_from_logits(logits, data.test_y),
        "params": param_count(model),
        "nonzero_params": nonzero_param_count(model),
        "size_kb": float_size_bytes(model) / 1024.0,
        "float_ms": _float_ms(forward, data.test_x[: spec.timing_clips], spec),
    }


def run_row(
    row: str, data: KWSData, spec: KWSBenchSpec, work: Path, progress: bool = False
) -> dict[str, Any]:
    """Train and measure one row; returns its JSON-able result."""
    from prunekit.bench.kws_rows import train_row

    torch.set_num_threads(spec.threads)
    if row == "edgeml_fastgrnn":
        from prunekit.bench.kws_edgeml import edgeml_logits, train_edgeml

        model, trainer, info = train_edgeml(spec, data, work)
        facts = _common_facts(model, data, spec, forward=lambda x: edgeml_logits(trainer, x))
        facts["our_forward_accuracy"] = accuracy_from_logits(
            logits_of(model, data.test_x), data.test_y
        )
    else:
        model, info = train_row(row, spec, data, work, progress=progress)
        facts = _common_facts(model, data, spec)
    if row in ("fastgrnn_lsq_q", "edgeml_fastgrnn"):
        facts.update(_quantized_facts(model, data, spec, work))
    return {"row": row, "label": ROWS[row], **facts, **info}


def run_kws_bench(
    data: KWSData,
    spec: KWSBenchSpec,
    work: str | Path,
    *,
    on_row: Callable[[str, str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or reuse) every row of `spec.rows`; returns {"spec", "data", "rows"}."""
    work = Path(work)
    rows = []
    for row in spec.rows:
        path = work / "rows" / f"{row}.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            if on_row:
                on_row(row, "done before")
            continue
        if on_row:
            on_row(row, "running")
        with tempfile.TemporaryDirectory(dir=_mkdir(work)) as tmp:
            result = run_row(row, data, spec, Path(tmp), progress=progress)
        write_json(path, result)
        rows.append(result)
    data_facts = {
        "train": int(data.train_x.shape[0]),
        "dev": int(data.dev_x.shape[0]),
        "test": int(data.test_x.shape[0]),
        "frames": data.frames,
        "features": data.n_in,
        "classes": len(data.labels),
        **data.meta,
    }
    return {"spec": spec.to_dict(), "data": data_facts, "rows": rows}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
