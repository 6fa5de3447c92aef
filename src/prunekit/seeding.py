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


def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    """Return the torch / numpy / python RNG states as (tensors, json)."""
    np_state = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
    }
    py = random.getstate()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


RngStates = tuple[torch.Tensor, tuple, tuple]


def rng_states(tensors: dict[str, torch.Tensor], meta: dict) -> RngStates:
    """The (torch, numpy, python) states `capture_rng` wrote, checked on throw-away generators.

    Raises:
        KeyError, TypeError, ValueError: a missing or malformed state (nothing is changed).
    """
    torch_state = tensors["rng.torch"]
    own = torch.get_rng_state()
    if torch_state.dtype != own.dtype or torch_state.shape != own.shape:
        raise ValueError(f"torch RNG state has shape {list(torch_state.shape)}")
    name, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np_state = (name, keys, pos, has_gauss, cached)
    np.random.RandomState().set_state(np_state)
    version, internal, gauss = meta["python"]
    py_state = (version, tuple(internal), gauss)
    random.Random().setstate(py_state)
    return torch_state, np_state, py_state


def set_rng_states(states: RngStates) -> None:
    """Put the global generators in the states `rng_states` returned."""
    torch_state, np_state, py_state = states
    torch.set_rng_state(torch_state)
    np.random.set_state(np_state)
    random.setstate(py_state)


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore the RNG states written by `capture_rng`."""
    set_rng_states(rng_states(tensors, meta))
