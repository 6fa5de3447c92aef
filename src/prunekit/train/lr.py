"""Learning-rate schedule: linear warmup, then cosine / linear decay to `min_lr_ratio * lr`."""

from __future__ import annotations

import math

from prunekit.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Return the learning rate for 0-based optimizer `step`.

    Example:
        >>> cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, decay="linear", min_lr_ratio=0.0)
        >>> [round(lr_at(s, cfg), 3) for s in (0, 9, 10, 55, 100)]
        [0.1, 1.0, 1.0, 0.5, 0.0]
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    shape = 1.0 - progress if cfg.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape)
