"""Training throughput of the prunekit Trainer vs a minimal hand-written PyTorch loop.

Both train the same model on the same batches; repetitions alternate between the two so that machine
noise hits both alike, and the ratio is taken from medians measured in one run.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.bench.markdown import bench_header
from prunekit.config import RunConfig
from prunekit.data import LMBatches
from prunekit.pipelines.lm_baseline import build_lm, prepare_data
from prunekit.train.task import LMTask
from prunekit.train.trainer import Trainer, build_optimizer


def _hand_loop_tokens_per_s(model: nn.Module, batches: LMBatches, order: list[int], cfg) -> float:
    """Tokens/s of the plainest loop: forward, cross-entropy, backward, clip, AdamW step."""
    opt = build_optimizer(model, cfg)
    model.train()
    start = time.perf_counter()
    for i in order:
        x, y = batches.window(i)
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return len(order) * x.numel() / (time.perf_counter() - start)


def _trainer_tokens_per_s(model: nn.Module, batches: LMBatches, steps: int, cfg, tmp) -> float:
    """Tokens/s of Trainer.train_step, the body of Trainer.fit (validation excluded)."""
    task = LMTask(batches, batches.data[0, :2], eval_batch_size=1, bptt=cfg.bptt)
    trainer = Trainer(model, task, cfg, tmp, progress=False)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * cfg.batch_size * cfg.bptt / (time.perf_counter() - start)


def measure(cfg: RunConfig, *, steps: int, repeats: int, threads: list[int], tmp) -> dict[str, Any]:
    """Median tokens/s (training) of Trainer and hand loop per thread count, and their ratio."""
    data = prepare_data(cfg)
    batches = LMBatches(data.train, cfg.train.batch_size, cfg.train.bptt)
    order = list(range(steps))
    base = build_lm(cfg, data.tokenizer.vocab_size)
    results: dict[str, Any] = {"steps": steps, "repeats": repeats, "by_threads": {}}
    for n in threads:
        torch.set_num_threads(n)
        _hand_loop_tokens_per_s(
            copy.deepcopy(base), batches, order[: max(2, steps // 4)], cfg.train
        )
        ours, hand = [], []
        for _ in range(repeats):
            ours.append(_trainer_tokens_per_s(copy.deepcopy(base), batches, steps, cfg.train, tmp))
            hand.append(_hand_loop_tokens_per_s(copy.deepcopy(base), batches, order, cfg.train))
        results["by_threads"][str(n)] = {
            "trainer_tokens_per_s": ours,
            "hand_loop_tokens_per_s": hand,
            "trainer_median": statistics.median(ours),
            "hand_loop_median": statistics.median(hand),
            "ratio": statistics.median(ours) / statistics.median(hand),
        }
    return results


def to_markdown(result: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    """A table of the medians and the ratio per thread count."""
    lines = [
        *bench_header(
            "Training throughput: prunekit Trainer vs a hand-written PyTorch loop",
            command,
            machine,
            f"{result['steps']} steps per repetition, {result['repeats']} repetitions, "
            "alternating; medians. Target: ratio >= 0.95.",
        ),
        "| threads | trainer tokens/s | hand loop tokens/s | ratio |",
        "|---|---|---|---|",
    ]
    for n, r in result["by_threads"].items():
        lines.append(
            f"| {n} | {r['trainer_median']:,.0f} | {r['hand_loop_median']:,.0f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"
