"""`prunekit bench kws`: seed 002's Table 1 row for a keyword task, from tensors.

Rows: FastGRNN (LSQ+Q), FastGRNN-LSQ (i.e. without LSQ), FastRNN, RNN, GRU, LSTM, and EdgeML's own
FastGRNN trained on the same clips with the same hyperparameters. For each: test accuracy, size
in KB as the paper counts it (`bench.kws_measure.quality_facts`), and 1-thread prediction time
per clip (`timing_facts`: float path, eager model, numpy integer path, C reference).

Each finished row is saved as `<work>/rows/<row>.json` with its trained model beside it
(`<row>.safetensors`); a rerun skips it (delete both to redo). Accuracy and size are valid on a
busy machine, timings are not: `timing="skip"` trains and measures quality only, and
`timing="only"` later times the saved models (on an idle machine) without training anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.bench.kws_data import KWSData
from prunekit.bench.kws_measure import quality_facts, timing_facts
from prunekit.bench.kws_rows import load_model, save_model
from prunekit.bench.kws_spec import ROWS, KWSBenchSpec
from prunekit.errors import PrunekitError
from prunekit.eval.accuracy import accuracy_from_logits
from prunekit.models.kws import KWSConfig

Timing = Literal["run", "skip", "only"]


def _train(row: str, data: KWSData, spec: KWSBenchSpec, work: Path, progress: bool):
    if row == "edgeml_fastgrnn":
        from prunekit.bench.kws_edgeml import train_edgeml

        return train_edgeml(spec, data, work)
    from prunekit.bench.kws_rows import train_row

    return train_row(row, spec, data, work, progress=progress)


def _quality(row: str, model: nn.Module, data: KWSData, spec: KWSBenchSpec) -> dict[str, Any]:
    facts = quality_facts(row, model, data, spec)
    if row == "edgeml_fastgrnn":  # accuracy through EdgeML's own forward pass; ours beside it
        from prunekit.bench.kws_edgeml import edgeml_forward

        forward = edgeml_forward(model)
        with torch.no_grad():
            logits = torch.cat([forward(x) for x in data.test_x.split(256)])
        facts["our_forward_accuracy"] = facts["accuracy"]
        facts["accuracy"] = accuracy_from_logits(logits, data.test_y)
    return facts


def run_row(
    row: str, data: KWSData, spec: KWSBenchSpec, work: Path, *, timing: bool, progress: bool
) -> tuple[dict[str, Any], nn.Module]:
    """Train and measure one row; returns its JSON-able result and the trained model."""
    torch.set_num_threads(spec.threads)
    with tempfile.TemporaryDirectory(dir=_mkdir(work)) as tmp:
        model, info = _train(row, data, spec, Path(tmp), progress)
    result = {"row": row, "label": ROWS[row], **_quality(row, model, data, spec), **info}
    result["spec"] = spec.to_dict()
    result["timing"] = _timed(row, model, data, spec) if timing else {"measured": False}
    return result, model


def _timed(row: str, model: nn.Module, data: KWSData, spec: KWSBenchSpec) -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"measured": True, "load_before": load, **timing_facts(row, model, data, spec)}


def run_kws_bench(
    data: KWSData,
    spec: KWSBenchSpec,
    work: str | Path,
    *,
    timing: Timing = "run",
    on_row: Callable[[str, str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or reuse, or with timing="only" re-time) every row of `spec.rows`.

    Returns:
        {"spec", "data", "rows"}: one dict per row (see `run_row`).

    Raises:
        PrunekitError: timing="only" for a row that was never trained with this spec.
    """
    rows_dir = Path(work) / "rows"
    rows = []
    for row in spec.rows:
        path = rows_dir / f"{row}.json"
        weights = path.with_suffix(".safetensors")
        if timing == "only":
            result = _retime(row, path, weights, data, spec)
            status = "timed"
        elif path.is_file() and weights.is_file():
            result, status = json.loads(path.read_text()), "done before"
        else:
            if on_row:
                on_row(row, "running")
            result, model = run_row(row, data, spec, rows_dir, timing=timing == "run",
                                    progress=progress)  # fmt: skip
            save_model(model, weights)
            status = "done"
        _check_spec(result, spec, path)
        write_json(path, result)  # after the weights: a JSON means the row is complete
        rows.append(result)
        if on_row:
            on_row(row, status)
    return {"spec": spec.to_dict(), "data": data_facts(data), "rows": rows}


def _retime(row: str, path: Path, weights: Path, data: KWSData, spec: KWSBenchSpec):
    if not path.is_file():
        raise PrunekitError(
            f"row {row} has not been trained under {path.parent.parent}: run the benchmark "
            "without --timing-only first (same --work and --set)"
        )
    result = json.loads(path.read_text())
    _check_spec(result, spec, path)
    torch.set_num_threads(spec.threads)
    model = load_model(result["config"], weights)
    result["timing"] = _timed(row, model, data, spec)
    return result


TIMING_SETTINGS = ("timing_clips", "timing_repeats", "threads", "rows")


def _check_spec(result: dict[str, Any], spec: KWSBenchSpec, path: Path) -> None:
    """A finished row must come from the same training settings (timing settings may differ) and
    a model config naming every current KWSConfig field (e.g. head_init: a row trained before
    the classifier started as EdgeML's is not reused)."""
    missing = sorted(set(KWSConfig().to_dict()) - set(result["config"]))
    if missing:
        raise PrunekitError(
            f"{path} was trained before model.{missing[0]} existed (older prunekit): use another "
            "--work folder, or delete the row to train it again"
        )
    old = {k: v for k, v in result["spec"].items() if k not in TIMING_SETTINGS}
    new = {k: v for k, v in spec.to_dict().items() if k not in TIMING_SETTINGS}
    if old != new:
        changed = sorted(k for k in new if old.get(k) != new[k])
        raise PrunekitError(
            f"{path} was trained with other settings ({', '.join(changed)}): use another --work "
            "folder, or delete the row to train it again"
        )


def data_facts(data: KWSData) -> dict[str, Any]:
    """Sizes and shape of the data, and the provider's own facts."""
    return {
        "train": int(data.train_x.shape[0]),
        "dev": int(data.dev_x.shape[0]),
        "test": int(data.test_x.shape[0]),
        "frames": data.frames,
        "features": data.n_in,
        "classes": len(data.labels),
        "labels": list(data.labels),
        **data.meta,
    }


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
