"""Learning-rate schedule: linear warmup, then cosine / linear decay to `min_lr_ratio * lr`, or a
step decay (seed 002's protocol: lr for the first 2/3 of the steps after warmup, then
`min_lr_ratio * lr`, e.g. x0.1 for the last 100 of 300 epochs)."""

from __future__ import annotations

import math

from prunekit.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Return the learning rate for 0-based optimizer `step`.

    Example:
        >>> cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, decay="linear", min_lr_ratio=0.0)
        >>> [round(lr_at(s, cfg), 3) for s in (0, 9, 10, 55, 100)]
        [0.1, 1.0, 1.0, 0.5, 0.0]
        >>> cfg = TrainConfig(steps=300, lr=1.0, warmup_steps=0, decay="step", min_lr_ratio=0.1)
        >>> [lr_at(s, cfg) for s in (0, 199, 200, 299)]
        [1.0, 1.0, 0.1, 0.1]
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.decay == "step":
        return cfg.lr * (cfg.min_lr_ratio if 3 * (step - cfg.warmup_steps) >= 2 * span else 1.0)
    shape = 1.0 - progress if cfg.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape)
