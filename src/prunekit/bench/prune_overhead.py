"""Overhead of pruning during training: a Trainer step with masks + score accumulation vs without.

Same model, same batches, same optimizer; repetitions alternate between the variants so machine
noise hits all alike, and the ratios come from medians measured in one run.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn

from prunekit.bench.markdown import bench_header
from prunekit.config import RunConfig
from prunekit.data import LMBatches
from prunekit.pipelines.lm_baseline import build_lm, prepare_data
from prunekit.prune import Cubic, PruneConfig, Pruner
from prunekit.train.task import LMTask
from prunekit.train.trainer import Trainer

VARIANTS = ("plain", "masked", "masked+updates")


def _make(base: nn.Module, variant: str, batches: LMBatches, cfg: RunConfig, tmp) -> Trainer:
    """A Trainer over a copy of `base`: plain, or with a Taylor pruner attached.

    "masked": masks in the forward pass and (g*w)^2 accumulated every step, but no mask update in
    the timed window (dt beyond it); "masked+updates": the cubic schedule re-computes masks every
    10 steps, as the main job does.
    """
    model = copy.deepcopy(base)
    pruner = None
    if variant != "plain":
        dt = 10 if variant == "masked+updates" else 10_000
        schedule = Cubic(s_i=0.0, s_f=0.9, t0=0, dt=dt, n=10)
        pruner = Pruner(model, PruneConfig(criterion="taylor", schedule=schedule)).attach()
    task = LMTask(batches, batches.data[0, :2], eval_batch_size=1, bptt=cfg.train.bptt)
    trainer = Trainer(model, task, cfg.train, tmp, progress=False)
    if pruner is not None:
        pruner.add_optimizer(trainer.optimizer)
    return trainer


def _tokens_per_s(trainer: Trainer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * trainer.cfg.batch_size * trainer.cfg.bptt / (time.perf_counter() - start)


def measure(cfg: RunConfig, *, steps: int, repeats: int, threads: list[int], tmp) -> dict[str, Any]:
    """Median training tokens/s of each variant per thread count, and the slowdown vs plain."""
    data = prepare_data(cfg)
    batches = LMBatches(data.train, cfg.train.batch_size, cfg.train.bptt)
    base = build_lm(cfg, data.tokenizer.vocab_size)
    out: dict[str, Any] = {"steps": steps, "repeats": repeats, "by_threads": {}}
    for n in threads:
        torch.set_num_threads(n)
        samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(repeats):
            for v in VARIANTS:  # a fresh trainer per repetition: the same first steps each time
                trainer = _make(base, v, batches, cfg, tmp)
                _tokens_per_s(trainer, 2)  # warm-up (also takes the first mask update of +updates)
                samples[v].append(_tokens_per_s(trainer, steps))
        med = {v: statistics.median(s) for v, s in samples.items()}
        out["by_threads"][str(n)] = {
            "tokens_per_s": samples,
            "median": med,
            "step_time_ratio": {v: med["plain"] / med[v] for v in VARIANTS},
        }
    return out


def to_markdown(result: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    """Table: variant x threads, medians and step-time ratio to the plain trainer."""
    lines = [
        *bench_header(
            "Pruning overhead during training",
            command,
            machine,
            f"{result['steps']} steps per repetition, {result['repeats']} repetitions, variants "
            "alternating; medians. `masked`: masks applied in the forward pass + Taylor (g·w)² "
            "accumulated every step; `masked+updates`: also a mask re-computation every 10 steps. "
            "Target: step-time ratio <= 1.10.",
        ),
        "| threads | variant | tokens/s | step-time ratio vs plain |",
        "|---|---|---|---|",
    ]
    for n, r in result["by_threads"].items():
        for v in VARIANTS:
            lines.append(f"| {n} | {v} | {r['median'][v]:,.0f} | {r['step_time_ratio'][v]:.3f} |")
    return "\n".join(lines) + "\n"
