import math

import pytest

from prunekit.config import TrainConfig
from prunekit.train.lr import lr_at


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.25),
        (3, 1.0),
        (4, 1.0),
        (7, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))),
        (10, 0.1),
    ],
)
def test_cosine_with_warmup(step, expected):
    cfg = TrainConfig(steps=10, lr=1.0, warmup_steps=4, decay="cosine", min_lr_ratio=0.1)
    assert lr_at(step, cfg) == pytest.approx(expected)


def test_constant_after_warmup():
    cfg = TrainConfig(steps=10, lr=0.5, warmup_steps=0, decay="constant")
    assert [lr_at(s, cfg) for s in (0, 5, 9)] == [0.5, 0.5, 0.5]


def test_step_decay_drops_once_after_two_thirds():
    """Seed 002: 200 epochs at lr, then x0.1 for another 100 (after the warmup, if any)."""
    cfg = TrainConfig(steps=300, lr=0.01, warmup_steps=0, decay="step", min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(300)]
    assert lrs[:200] == [0.01] * 200 and lrs[200:] == pytest.approx([0.001] * 100)
    warm = TrainConfig(steps=40, lr=1.0, warmup_steps=10, decay="step", min_lr_ratio=0.5)
    assert [lr_at(s, warm) for s in (0, 9, 10, 29, 30, 39)] == [0.1, 1.0, 1.0, 1.0, 0.5, 0.5]
