"""Seed 000's stage 2: the smallest rank explaining a fraction of each matrix's sum of sigma^2.

    plan = variance_plan(matrices, 0.9)    # {name: r} for the matrices that get cheaper
    factorize(model, plan)                 # U <- U_r S_r^(1/2), V <- S_r^(1/2) V_r^T

A matrix whose rank-r factors would hold as many parameters as the matrix itself
(r (m + n) >= m n) is left out of the plan: it stays one dense (unfactored) matrix, since
factoring it would make the model larger and slower. `nu(W)` is the paper's nondimensional trace
norm coefficient, logged during stage 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from prunekit.errors import PrunekitError
from prunekit.lowrank.factor import Matrix


@torch.no_grad()
def singular_values(w: Tensor) -> Tensor:
    """(min(m, n),) singular values of `w`, in float64, largest first."""
    return torch.linalg.svdvals(w.detach().to(torch.float64))


def check_fraction(value: float) -> float:
    """Return `value` if it is a variance fraction in (0, 1].

    Raises:
        PrunekitError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise PrunekitError(
            f"variance threshold {value!r} must be in (0, 1]: the fraction of sum(sigma^2) the "
            "kept ranks explain, e.g. 0.9"
        )
    return float(value)


def rank_for_variance(s: Tensor, fraction: float) -> int:
    """Smallest r with sum_{i<=r} s_i^2 >= fraction * sum_i s_i^2 (at least 1).

    Args:
        s (Tensor[d]): singular values, largest first.
        fraction: in (0, 1].
    """
    check_fraction(fraction)
    energy = s.to(torch.float64).pow(2)
    total = float(energy.sum())
    if total == 0.0:
        return 1
    cum = torch.cumsum(energy, 0) / total  # (d,)
    # a tolerance keeps fraction=1 at the last rank that adds anything despite rounding
    r = int((cum < fraction - 1e-12).sum()) + 1
    return min(r, s.numel())


def variance_plan(matrices: list[Matrix], fraction: float) -> dict[str, int]:
    """{name: r} for every matrix whose variance rank r makes it cheaper (r (m + n) < m n)."""
    plan = {}
    for mat in matrices:
        m, n = mat.shape
        r = rank_for_variance(singular_values(mat.weight), fraction)
        if r * (m + n) < m * n:
            plan[mat.name] = r
    return plan


def fraction_plan(matrices: list[Matrix], fraction: float) -> dict[str, int]:
    """{name: r} keeping `fraction` of each matrix's parameters: r = max(1, floor(f m n / (m + n)))
    (matrices where that is not smaller than m n are left out, i.e. stay dense)."""
    plan = {}
    for mat in matrices:
        m, n = mat.shape
        r = max(1, int(fraction * m * n / (m + n)))
        if r * (m + n) < m * n:
            plan[mat.name] = r
    return plan


def nu(w: Tensor) -> float:
    """nu(W) = (|W|_* / |W|_F - 1) / (sqrt(d) - 1), d = min(m, n): 0 iff rank 1, 1 iff all
    singular values are equal (full rank). 0 for a zero matrix or d = 1."""
    s = singular_values(w)
    d = s.numel()
    fro = float(s.pow(2).sum().sqrt())
    if d == 1 or fro == 0.0:
        return 0.0
    return (float(s.sum()) / fro - 1.0) / (math.sqrt(d) - 1.0)


def variance_ranks(w: Tensor, fractions: tuple[float, ...] = (0.9, 0.99)) -> dict[str, int]:
    """{"r90": ..., "r99": ...}: the variance rank of `w` at each fraction (for the ν log)."""
    s = singular_values(w)
    return {f"r{round(100 * f):d}": rank_for_variance(s, f) for f in fractions}
