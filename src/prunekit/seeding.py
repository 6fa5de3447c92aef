"""One seed for every random number generator a run draws from: torch, numpy and Python's.

Every entry point (`prunekit run`, `train`, `prune`, `eval`, `bench paper`) and every pruning
run seeds from the recipe's `train.seed`, so the same command gives bit-identical checkpoints;
checkpoints keep the generators' states, so a resumed run draws what an uninterrupted one would.
Data order does not depend on these states: it is a function of (train.seed, epoch) alone.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from prunekit.train.checkpoint import capture_rng, restore_rng


def seed_everything(seed: int) -> None:
    """Seed torch (CPU), numpy's global generator and Python's `random` with `seed`.

    Example:
        >>> seed_everything(3); a = (torch.rand(1).item(), np.random.rand(), random.random())
        >>> seed_everything(3); a == (torch.rand(1).item(), np.random.rand(), random.random())
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def same_rng_state() -> Iterator[None]:
    """Run the block, then put the torch / numpy / Python generators back as they were before it.

    Runs that each start inside this block start from the same state, whether or not the
    earlier ones ran (or were skipped because a resumed job had finished them).
    """
    tensors, meta = capture_rng()
    try:
        yield
    finally:
        restore_rng(tensors, meta)
