"""Measured decode speed and deployed size of compressed LMs, beside their FLOP ratios.

Every model is deployed as `prunekit export` deploys it — `export.compact.compact` (smaller
layers, low rank, CSR where measured faster) run by `runtime.fast_decoder` — and the dense
baseline as its fastest dense path (`export.fastest_dense` + `runtime.fast_decoder`). All of them
are timed in one interleaved batch-1 decoding run (`bench.latency.compare_variants`), so each
speed-up is a ratio of medians from the same run, on the same machine state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.config import SpeedConfig
from prunekit.export import compact_size_report, fastest_dense
from prunekit.pipelines.lm_artifact import load_lm_checkpoint

log = logging.getLogger(__name__)


def _compressed(model: nn.Module) -> bool:
    from prunekit.prune.factorized import FACTORIZED_TYPES
    from prunekit.prune.masks import masks_by_param

    return bool(masks_by_param(model)) or any(
        isinstance(m, FACTORIZED_TYPES) for m in model.modules()
    )


def deploy(
    model: nn.Module, *, threads: int = 1, repeats: int = 5
) -> tuple[nn.Module, nn.Module, str]:
    """The model as deployed: (decoder, the compact model it runs, the backend's name).

    A pruned / factorized model goes through `export.compact` (choices timed at batch 1 on
    `threads` threads, `repeats` samples each); a never-pruned one through `export.fastest_dense`.
    """
    from prunekit.export.compact import compact
    from prunekit.runtime import fast_decoder

    if not _compressed(model):
        dense = fastest_dense(model.eval(), threads=threads)
        return fast_decoder(dense), dense, "export.fastest_dense + runtime.fast_decoder"
    small, _ = compact(model, threads=threads, repeats=repeats)
    return fast_decoder(small), small, "export.compact + runtime.fast_decoder"


def measure_speed(
    baseline: nn.Module,
    checkpoints: list[str | Path],
    cfg: SpeedConfig,
    *,
    load: Callable[[Path], nn.Module] = load_lm_checkpoint,
) -> dict[str, Any]:
    """Deployed bytes and batch-1 decode speed of each checkpoint's model and of `baseline`.

    Args:
        baseline: the dense model (the reference of every speed-up).
        checkpoints: the compressed models' checkpoints.
        cfg: threads, context, timed steps and repetitions of the measurement.
        load: checkpoint -> model (masks / factorized layers attached).

    Returns:
        {"settings": {...}, "dense": entry, "models": [entry per checkpoint]}, each entry
        {"compact_size_bytes", "decode_ms_per_token", "p10_ms", "p90_ms", "decode_speedup",
        "deployed_flop_ratio" (dense FLOPs / FLOPs the deployed model executes per decoded
        token: a dense-kept layer counts all its zeros), "backend"}.
    """
    from prunekit.bench.latency import compare_variants

    variants, sizes, backends = {}, {}, {}
    models = {"dense": baseline} | {str(i): load(Path(c)) for i, c in enumerate(checkpoints)}
    for name, model in models.items():
        log.info("deploying %s for the speed measurement", name)
        variants[name], small, backends[name] = deploy(model, threads=cfg.threads)
        sizes[name] = compact_size_report(small)["size_bytes"]
    result = compare_variants(
        variants, baseline="dense", threads=[cfg.threads], context=cfg.context,
        steps=cfg.steps, repeats=cfg.repeats,
    )  # fmt: skip
    timed = result["by_threads"][str(cfg.threads)]

    def entry(name: str) -> dict[str, Any]:
        t = timed[name]
        return {
            "compact_size_bytes": sizes[name], "decode_ms_per_token": t["median_ms"],
            "p10_ms": t["p10_ms"], "p90_ms": t["p90_ms"], "decode_speedup": t["speedup"],
            "deployed_flop_ratio": result["variants"][name]["flop_ratio"],
            "backend": backends[name],
        }  # fmt: skip

    settings = cfg.model_dump(mode="json")
    settings.update(flops_context_len=result["flops_context_len"], batch_size=1)
    models = [entry(str(i)) for i in range(len(checkpoints))]
    return {"settings": settings, "dense": entry("dense"), "models": models}
