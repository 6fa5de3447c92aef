"""Train one row of the keyword-spotting table with prunekit's Trainer (and LSQ pruners); save and
load a trained row's model (safetensors + its config in the row's JSON)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from prunekit.atomic import write_with
from prunekit.bench.kws_data import KWSData
from prunekit.bench.kws_spec import KWSBenchSpec
from prunekit.config import TrainConfig
from prunekit.errors import PrunekitError
from prunekit.models.kws import KWSClassifier, KWSConfig
from prunekit.train.classify import ClassifyTask
from prunekit.train.lsq import lsq_pruners
from prunekit.train.trainer import Trainer


def model_config(row: str, spec: KWSBenchSpec, data: KWSData) -> KWSConfig:
    """The architecture of a row: LSQ+Q is low rank with piecewise-linear nonlinearities."""
    base = {"n_in": data.n_in, "n_classes": len(data.labels), "d_hidden": spec.hidden}
    if row == "fastgrnn_lsq_q":
        return KWSConfig(
            cell="fastgrnn",
            w_rank=spec.w_rank,
            u_rank=spec.u_rank,
            gate_nl="quantSigm",
            update_nl="quantTanh",
            **base,
        )
    if row == "gru":
        base["d_hidden"] = spec.gru_hidden
    return KWSConfig(cell=row, **base)


def total_steps(spec: KWSBenchSpec, data: KWSData) -> int:
    """Optimizer steps of `spec.epochs` passes over the training clips."""
    return spec.epochs * math.ceil(data.train_x.shape[0] / spec.batch_size)


def train_config(spec: KWSBenchSpec, steps: int, lr: float) -> TrainConfig:
    """Adam (no weight decay; gradient norm clipped at `spec.grad_clip`, 0 = none); lr x0.1
    after 2/3 of the steps (`spec.decay` "step", seed 002's protocol) or a cosine decay to
    lr/10; ten validations."""
    return TrainConfig(
        steps=steps,
        batch_size=spec.batch_size,
        lr=lr,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        warmup_steps=0,
        decay=spec.decay,
        min_lr_ratio=0.1,
        grad_clip=spec.grad_clip,
        eval_every=max(1, steps // 10),
        log_every=max(1, steps // 50),
        seed=spec.seed,
        threads=spec.threads,
    )


def train_row(
    row: str, spec: KWSBenchSpec, data: KWSData, work_dir: Path, progress: bool = False
) -> tuple[KWSClassifier, dict[str, Any]]:
    """Build and train the model of `row` (not the EdgeML row); the final model is returned.

    LSQ+Q trains dense low rank for the first third, then hard-thresholds W and U to s_w, s_u
    every `trimlevel` steps, then retrains on the frozen support (two Pruners, `lsq_pruners`).
    """
    torch.manual_seed(spec.seed)
    model = KWSClassifier(model_config(row, spec, data))
    steps = total_steps(spec, data)
    callbacks = []
    if row == "fastgrnn_lsq_q":
        callbacks = lsq_pruners(model, spec.s_w, spec.s_u, steps, every=spec.trimlevel)
    task = ClassifyTask(
        data.train_x, data.train_y, data.dev_x, data.dev_y, batch_size=spec.batch_size
    )
    lr = spec.rnn_lr if row == "rnn" else spec.lr
    trainer = Trainer(
        model, task, train_config(spec, steps, lr), work_dir, callbacks=callbacks, progress=progress
    )
    started = time.perf_counter()
    history = trainer.fit()
    info = {
        "config": model.config.to_dict(),
        "steps": steps,
        "lr": lr,
        "train_seconds": time.perf_counter() - started,
        "final_dev_loss": history.valid[-1][1] if history.valid else None,
    }
    if callbacks:
        info["sparsity"] = [r for p in callbacks for r in p.report()]
        for pruner in callbacks:
            pruner.finalize()  # a plain model holding the zeros (no per-forward mask products)
    return model, info


def save_model(model: KWSClassifier, path: Path) -> None:
    """Write the model's weights (safetensors, atomically)."""
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    write_with(path, lambda tmp: save_file(tensors, str(tmp)))


def load_model(config: dict[str, Any], path: Path) -> KWSClassifier:
    """The model of a finished row: its config (row JSON "config") and weights (`save_model`).

    Raises:
        PrunekitError: the weights are missing (a row from before models were saved).
    """
    if not path.is_file():
        raise PrunekitError(
            f"{path} is missing: timings need the trained model; delete the row's JSON beside "
            "it to train the row again"
        )
    model = KWSClassifier(KWSConfig.from_dict(config))
    model.load_state_dict(load_file(str(path)))
    return model.eval()
