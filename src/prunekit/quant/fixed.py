"""Integer primitives shared, bit for bit, by the Python integer path and the C reference.

A real multiplier m > 0 is stored as an integer pair (M, n) with M = round(m 2^n) in [2^14, 2^15),
and applied as `rq(acc, M, n) = (acc * M + 2^(n-1)) >> n` in 64-bit integers (arithmetic shift:
rounds half up). Building the pair uses floats once, offline; applying it never does.
"""

from __future__ import annotations

import math

import numpy as np

from prunekit.errors import PrunekitError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def multiplier(m: float) -> tuple[int, int]:
    """(M, n) with M / 2^n ~= m, M in [2^14, 2^15) and n >= 1.

    Raises:
        PrunekitError: m is not positive, or too large (>= 2^13) to keep n >= 1.
    """
    if not m > 0 or not math.isfinite(m):
        raise PrunekitError(f"rescale factor {m!r} must be a positive number")
    n = 14 - math.floor(math.log2(m))
    M = round(m * 2.0**n)
    if M >= 2**15:  # m just below a power of two rounded up
        n -= 1
        M = round(m * 2.0**n)
    if n < 1:
        raise PrunekitError(
            f"rescale factor {m:.4g} is too large for a (M, n) pair: lower the activation "
            "fraction bits or the input scale"
        )
    return int(M), int(n)


def rq(acc: np.ndarray, M: int, n: int) -> np.ndarray:
    """Rescale int64 values by M / 2^n, rounding half up: (acc * M + 2^(n-1)) >> n."""
    return (acc.astype(np.int64) * np.int64(M) + np.int64(1 << (n - 1))) >> np.int64(n)


def check_int32(values: np.ndarray, what: str) -> np.ndarray:
    """Return values (int64) unchanged after checking they fit an int32 accumulator.

    Raises:
        PrunekitError: a value outside the int32 range (the C code would overflow).
    """
    if values.size and (values.min() < INT32_MIN or values.max() > INT32_MAX):
        raise PrunekitError(
            f"{what} overflows an int32 accumulator (range {values.min()}..{values.max()}): "
            "lower the activation fraction bits (act_frac) or the input scale"
        )
    return values
