"""EdgeML's own FastGRNN row: its cell and its `FastTrainer` (dense / IHT / sparse retrain) on the
same clips, with the same hyperparameters, then measured like ours.

EdgeML's FastTrainer as released (0.3.0) builds its Adam optimizer over the cell's parameters
before it creates the classifier layer (FC, FCbias), so the classifier is never trained and
stays at its random N(0, 1) start. We patch exactly that, and nothing else: after the trainer
is built, its optimizer is rebuilt (same Adam, same learning rate) over the cell's parameters and
FC, FCbias (`EDGEML_PATCH`). Everything else is EdgeML's own: its cell, `BaseRNN` unrolling,
loss, epoch loop, hard thresholding (`utils.hardThreshold`, with the NumPy-2 shim of
`prunekit.models.edgeml_ref`), support copying and learning-rate decay (x0.1 after 2/3 of the
epochs, the paper's protocol, as our rows).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prunekit.bench.kws_data import KWSData
from prunekit.bench.kws_rows import model_config
from prunekit.bench.kws_spec import KWSBenchSpec
from prunekit.errors import PrunekitError
from prunekit.models.edgeml_ref import edgeml_cell, import_edgeml, load_from_edgeml
from prunekit.models.kws import KWSClassifier

EDGEML_TRIMLEVEL = 15  # hard-coded in FastTrainer.train
EDGEML_PATCH = (
    "EdgeML 0.3.0 FastTrainer with one patch: its optimizer rebuilt to include the classifier "
    "layer (as released, FC and FCbias are never trained)"
)


def train_edgeml(
    spec: KWSBenchSpec, data: KWSData, work_dir: Path
) -> tuple[KWSClassifier, dict[str, Any]]:
    """Train EdgeML's FastGRNN (LSQ+Q hyperparameters) with EdgeML's FastTrainer (patched, above).

    Returns:
        our KWSClassifier holding EdgeML's trained weights (for the integer path and saving;
        `edgeml_forward` runs them through EdgeML's own code again) and run facts.
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
    trainer.optimizer = torch.optim.Adam([*cell.parameters(), trainer.FC, trainer.FCbias], spec.lr)
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
        "note": EDGEML_PATCH,
    }
    return ours, info


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


def edgeml_forward(model: KWSClassifier) -> Callable[[torch.Tensor], torch.Tensor]:
    """EdgeML's own float forward pass (its cell unrolled by its `BaseRNN`, then x FC + FCbias)
    with the weights of `model`: clips (B, T, F) -> logits (B, C)."""
    rnn = import_edgeml().rnn.BaseRNN(edgeml_cell(model.rnn.cell)).eval()
    fc, bias = model.head.weight.detach().t().contiguous(), model.head.bias.detach().clone()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(rnn(x)[:, -1], fc) + bias

    return forward
