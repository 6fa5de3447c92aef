"""EdgeML's own FastGRNN row: its cell and its `FastTrainer` (dense / IHT / sparse retrain) on the
same clips, with the same hyperparameters, then measured like ours.

EdgeML's FastTrainer as released (0.3.0) trains only the cell: its classifier layer (FC, FCbias)
is created after the optimizer and never updated, so it stays at its random N(0, 1) start. We run
it as released (with the import shims of `prunekit.models.edgeml_ref`) and say so in the table.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prunekit.bench.kws_data import KWSData
from prunekit.bench.kws_rows import model_config
from prunekit.bench.kws_spec import KWSBenchSpec
from prunekit.errors import PrunekitError
from prunekit.models.edgeml_ref import import_edgeml, load_from_edgeml
from prunekit.models.kws import KWSClassifier

EDGEML_TRIMLEVEL = 15  # hard-coded in FastTrainer.train


def train_edgeml(
    spec: KWSBenchSpec, data: KWSData, work_dir: Path
) -> tuple[KWSClassifier, Any, dict[str, Any]]:
    """Train EdgeML's FastGRNN (LSQ+Q hyperparameters) with EdgeML's FastTrainer.

    Returns:
        our KWSClassifier holding EdgeML's trained weights (for the integer path), EdgeML's
        trainer (its `computeLogits` is EdgeML's own float forward pass), and run facts.
    """
    edgeml = import_edgeml()
    _check_projects(spec, data)
    cfg = model_config("fastgrnn_lsq_q", spec, data)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed)  # FastTrainer shuffles with numpy's global generator
    cell = edgeml.rnn.FastGRNNCell(
        cfg.n_in,
        cfg.d_hidden,
        gate_nonlinearity=cfg.gate_nl,
        update_nonlinearity=cfg.update_nl,
        wRank=cfg.w_rank,
        uRank=cfg.u_rank,
        wSparsity=spec.s_w,
        uSparsity=spec.s_u,
    )
    cell.num_weight_matrices = cell._num_weight_matrices
    work_dir.mkdir(parents=True, exist_ok=True)
    n_classes = len(data.labels)
    trainer = edgeml.FastTrainer(
        cell, n_classes, sW=spec.s_w, sU=spec.s_u, learningRate=spec.lr,
        outFile=str(work_dir / "edgeml_log.txt"),
    )  # fmt: skip
    flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731 - EdgeML takes (N, T * F)
    onehot = lambda y: F.one_hot(y, n_classes).float()  # noqa: E731
    started = time.perf_counter()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        trainer.train(
            spec.batch_size, spec.epochs, flat(data.train_x), flat(data.dev_x),
            onehot(data.train_y), onehot(data.dev_y),
            max(1, 2 * spec.epochs // 3), 0.1, str(work_dir), str(work_dir),
        )  # fmt: skip
    seconds = time.perf_counter() - started
    ours = KWSClassifier(cfg)
    load_from_edgeml(ours.rnn.cell, cell)
    with torch.no_grad():
        ours.head.weight.copy_(trainer.FC.detach().t())
        ours.head.bias.copy_(trainer.FCbias.detach())
    nnz, size, _ = trainer.getModelSize()
    info = {
        "config": cfg.to_dict(),
        "train_seconds": seconds,
        "edgeml_reported_nnz": int(nnz),
        "edgeml_reported_kb": float(size) / 1024.0,
        "note": "EdgeML FastTrainer 0.3.0 as released: its classifier layer is never trained",
    }
    return ours, trainer, info


def _check_projects(spec: KWSBenchSpec, data: KWSData) -> None:
    """EdgeML's FastTrainer hard-thresholds at batches that are multiples of 15 (fixed) within
    the middle third; with none there it crashes in the third stage, so refuse up front."""
    total = math.ceil(data.train_x.shape[0] / spec.batch_size) * spec.epochs
    lo, hi = int(total / 3.0), int(2 * total / 3.0)
    if not any(t % EDGEML_TRIMLEVEL == 0 for t in range(lo, hi)):
        raise PrunekitError(
            f"EdgeML's FastTrainer would never hard-threshold in {total} batches (it does so at "
            f"multiples of {EDGEML_TRIMLEVEL} in [{lo}, {hi})): raise epochs or lower batch_size"
        )


def edgeml_logits(trainer: Any, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """EdgeML's own float forward pass (BaseRNN + FC) on clips x (N, T, F): logits (N, C)."""
    with torch.no_grad():
        parts = [
            trainer.computeLogits(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)
        ]
    return torch.cat(parts)
