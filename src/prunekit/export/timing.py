"""Small CPU timing helpers shared by the export choices and the latency benchmark.

All timings are wall-clock (`time.perf_counter`) under `torch.inference_mode()`. Candidates are
timed interleaved (round-robin within each repetition, rotating the order) so that machine noise
hits them alike; the caller compares medians.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from prunekit.errors import PrunekitError


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Run the block with `torch.set_num_threads(threads)`, restoring the previous count after.

    Raises:
        PrunekitError: threads < 1.
    """
    check_positive_int("threads", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def onednn_disabled() -> Iterator[None]:
    """Run the block with oneDNN (mkldnn) kernels switched off; only the `enabled` flag changes."""
    before = torch.backends.mkldnn.set_flags(False, None, None, None)
    try:
        yield
    finally:
        torch.backends.mkldnn.set_flags(before[0], None, None, None)


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Return `value` if it is an int >= `minimum`.

    Raises:
        PrunekitError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PrunekitError(
            f"{name}={value!r} must be an integer >= {minimum}: pass e.g. {name}=20"
        )
    return value


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """(p10, median, p90) of `samples` (inclusive quantiles; one sample gives it three times)."""
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    cuts = statistics.quantiles(samples, n=10, method="inclusive")
    return cuts[0], statistics.median(samples), cuts[8]


def interleaved_us(
    candidates: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 3,
    min_sample_us: float = 300.0,
) -> dict[str, list[float]]:
    """Time each candidate `repeats` times, round-robin, in microseconds per call.

    Each sample runs a candidate enough times in a row to last about `min_sample_us` (so the
    timer's resolution does not matter), calibrated once after `warmup` calls.

    Args:
        candidates: name -> zero-argument callable to time.
        repeats: samples per candidate.
        warmup: untimed calls per candidate first.
        min_sample_us: target duration of one sample.

    Returns:
        name -> list of `repeats` samples (µs per call).
    """
    check_positive_int("repeats", repeats)
    names = list(candidates)
    inner: dict[str, int] = {}
    with torch.inference_mode():
        for name in names:
            fn = candidates[name]
            for _ in range(warmup):
                fn()
            start = time.perf_counter()
            fn()
            once_us = max((time.perf_counter() - start) * 1e6, 0.1)
            inner[name] = max(1, math.ceil(min_sample_us / once_us))
        samples: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(repeats):
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                fn, n = candidates[name], inner[name]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - start) * 1e6 / n)
    return samples


def median_us(candidates: Mapping[str, Callable[[], object]], *, repeats: int) -> dict[str, float]:
    """Median µs per call of each candidate, timed interleaved (see `interleaved_us`)."""
    return {k: statistics.median(v) for k, v in interleaved_us(candidates, repeats=repeats).items()}
