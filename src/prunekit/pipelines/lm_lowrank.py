"""A recipe's `lowrank:` sections on its language model (`prunekit run`): seed 000 on an LM.

Each section (and each point of its lambda grid) trains the recipe's model from scratch with the
recipe's data and training settings through `prunekit.pipelines.lowrank.run_lowrank`, and gives
one row per variance threshold with perplexities, the honest parameter count and the FLOPs of the
factored model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.config import RunConfig
from prunekit.lowrank.config import LowRankSection
from prunekit.lowrank.factor import select_matrices
from prunekit.models import model_config
from prunekit.pipelines.lm_baseline import LMData, build_lm, evaluate, lm_task
from prunekit.pipelines.lowrank import run_lowrank
from prunekit.pipelines.run_binding import bind, bound_train, data_fingerprint


def check_lowrank(cfg: RunConfig, model: nn.Module) -> None:
    """Validate every `lowrank:` section's scope against `model` before any training.

    Raises:
        PrunekitError: a scope that selects no factorable matrix or names unknown tensors.
    """
    for section in cfg.lowrank:
        select_matrices(model, section.scope_config())


def lm_metrics(data: LMData, cfg: RunConfig):
    """model -> perplexities (valid, test), as `lm_baseline.evaluate` without its dense FLOPs."""

    def metrics(model: nn.Module) -> dict[str, Any]:
        out = evaluate(model, data, cfg)
        for key in ("params", "flops_per_token", "size_bytes"):
            out.pop(key, None)  # the low-rank row counts these itself (factors, thin matmuls)
        return out

    return metrics


def lowrank_lm(
    cfg: RunConfig,
    section: LowRankSection,
    data: LMData,
    out: Path,
    *,
    resume: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every grid point of `section` into out/<point name>/; return all stage-2 rows.

    Rows carry `effective_params` and `size_fraction` (of the dense model) like pruning rows.
    `out` is bound to the corpus, model, training and section (`run_binding`): results made
    with other ones are deleted and redone (`resume=False`: always), never reused.
    """
    torch.set_num_threads(cfg.train.threads)
    binding = {
        **data_fingerprint(cfg, data.corpus_sha256),
        "model": model_config(build_lm(cfg, data.tokenizer.vocab_size)),
        "train": bound_train(cfg),
        "section": section.model_dump(mode="json"),
    }
    bind(out, binding, resume=resume, redo=True, owned=True)
    rows: list[dict[str, Any]] = []
    for point in section.grid():
        model = build_lm(cfg, data.tokenizer.vocab_size)
        result = run_lowrank(
            model, lm_task(data, cfg), cfg.train, point, out / point.name,
            evaluate=lm_metrics(data, cfg), progress=progress,
        )  # fmt: skip
        for row in result["rows"]:
            row.update(
                effective_params=row["params"],
                size_fraction=row["params"] / row["dense_params"],
                sparse_flops_per_token=row["flops_per_token"],
                section=section.name,
            )
            rows.append(row)
    return rows
