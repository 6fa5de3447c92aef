"""Pruning schedules: small frozen value objects that map an optimizer step to a pruning target.

`OneShot`, `Cubic` and `IHT` are sparsity schedules (`schedule(step)` is the fraction of weights to
remove); `NarangRamp` is a threshold schedule (Narang et al. 2017: `threshold(step, q)` is a
magnitude threshold). Every schedule answers `should_update(step)` (is this a mask-update step?),
`opens_after(step)` (are masks reset to all-ones after this step, so that the next step is dense
and pruned weights may come back? only `IHT` says yes) and `last_step` (after it, masks never
change).

Steps are the 0-based index of the optimizer step just taken: `pruner.step(0)` runs after the first
`optimizer.step()`.

Example:
    >>> s = Cubic(s_f=0.8, t0=10, dt=5, n=4)
    >>> [round(s(t), 6) for t in (9, 15, 20, 30)]
    [0.0, 0.4625, 0.7, 0.8]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, ClassVar

from prunekit.errors import PrunekitError
from prunekit.prune._serial import pack, unpack

_VERSION = 1


def _check_fraction(name: str, value: Any, example: float = 0.9) -> None:
    """Raise unless `value` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise PrunekitError(
            f"{name}={value!r} must be in [0, 1): it is the fraction of weights removed, "
            f"e.g. {name}={example}"
        )


def _check_int(name: str, value: Any, lo: int, example: int) -> None:
    """Raise unless `value` is an int (not a bool) >= `lo`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise PrunekitError(f"{name}={value!r} must be an integer >= {lo}: e.g. {name}={example}")


def _check_q(q: Any) -> None:
    """Raise unless `q` is a non-empty mapping of names to numbers > 0."""
    bad = not isinstance(q, dict) or not q
    bad = bad or any(
        not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int | float) or v <= 0
        for k, v in q.items()
    )
    if bad:
        raise PrunekitError(
            f"q={q!r} must map layer types or tensor names to numbers > 0: e.g. "
            "q={'recurrent': 0.11, 'linear': 0.16} (prunekit.prune.narang.narang_q computes it "
            "from a trained dense model)"
        )


def _check_positive(name: str, value: Any, example: float) -> None:
    """Raise unless `value` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PrunekitError(f"{name}={value!r} must be a number > 0: e.g. {name}={example}")


class _Schedule:
    """Shared serialisation of the schedule dataclasses."""

    kind: ClassVar[str] = "sparsity"

    def opens_after(self, step: int) -> bool:
        """Whether masks are reset to all-ones after `step` (pruned weights may regrow)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """Return `{"_type", "_version", "_data"}` (JSON-able)."""
        return pack(type(self).__name__, _VERSION, asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Rebuild the schedule `to_dict` returned.

        Raises:
            PrunekitError: a dict of another schedule type, an unknown version or bad fields.
        """
        _, data = unpack(d, {cls.__name__: _VERSION})
        try:
            return cls(**data)
        except TypeError as exc:
            raise PrunekitError(f"bad {cls.__name__} fields {sorted(data)}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class OneShot(_Schedule):
    """Remove `sparsity` of the weights at one step; the target is 0 before it.

    Args:
        sparsity: fraction of weights removed, in [0, 1).
        step: the optimizer step at which masks are computed (0 = after the first step).
    """

    sparsity: float
    step: int = 0

    def __post_init__(self) -> None:
        _check_fraction("sparsity", self.sparsity)
        _check_int("step", self.step, 0, 0)

    def __call__(self, step: int) -> float:
        """Return the target sparsity in force at `step`."""
        return float(self.sparsity) if step >= self.step else 0.0

    def should_update(self, step: int) -> bool:
        """Return whether masks are recomputed at `step`."""
        return step == self.step

    @property
    def last_step(self) -> int:
        """The last mask-update step."""
        return self.step


@dataclass(frozen=True, kw_only=True)
class Cubic(_Schedule):
    """Polynomial (cubic) sparsity ramp of Zhu & Gupta 2017, seed 004 eq. 4.

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3, evaluated at the last update step <= t.
    Masks are updated at t0, t0 + dt, ..., t0 + n * dt; the target is s_i before t0 and s_f after.

    Args:
        s_i: initial sparsity, in [0, s_f].
        s_f: final sparsity, in [0, 1).
        t0: first update step (>= 0).
        dt: steps between updates (>= 1).
        n: number of update intervals (>= 1), so there are n + 1 updates.
        stops: sparsities in (s_i, s_f) the ramp lands on exactly: the first update whose
            value would reach a stop takes the stop's value instead (one run, checkpointed
            at several sizes, then has a model exactly at each). The last update stays s_f.

    Example:
        >>> s = Cubic(s_f=0.8, dt=1, n=4, stops=(0.5,))
        >>> [round(s(t), 6) for t in range(5)]
        [0.0, 0.4625, 0.5, 0.7875, 0.8]
    """

    s_i: float = 0.0
    s_f: float
    t0: int = 0
    dt: int
    n: int
    stops: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_fraction("s_i", self.s_i, 0.0)
        _check_fraction("s_f", self.s_f)
        if self.s_i > self.s_f:
            raise PrunekitError(
                f"s_i={self.s_i!r} must be <= s_f={self.s_f!r}: sparsity only grows; "
                "lower s_i or raise s_f"
            )
        _check_int("t0", self.t0, 0, 0)
        _check_int("dt", self.dt, 1, 100)
        _check_int("n", self.n, 1, 10)
        object.__setattr__(self, "stops", tuple(sorted(float(x) for x in self.stops)))
        for stop in self.stops:
            if not self.s_i < stop < self.s_f:
                raise PrunekitError(
                    f"stop {stop!r} must lie strictly between s_i={self.s_i!r} and "
                    f"s_f={self.s_f!r}: drop it or change the range"
                )
        if self.stops and self._values[-1] != self.s_f:
            raise PrunekitError(
                f"n={self.n} updates cannot land on {len(self.stops)} stops and still end at "
                f"s_f={self.s_f!r}: allow more updates (more steps, or a smaller dt: prune more often)"
            )

    def _ramp(self, u: int) -> float:
        return float(self.s_f + (self.s_i - self.s_f) * (1.0 - u / self.n) ** 3)

    @cached_property
    def _values(self) -> list[float]:
        """The target of each update 0..n, with the stops landed on."""
        values, pending = [], list(self.stops)
        for u in range(self.n + 1):
            v = self._ramp(u)
            if pending and pending[0] <= v:
                v = pending.pop(0)
            values.append(v)
        return values

    def __call__(self, step: int) -> float:
        """Return the target sparsity in force at `step`."""
        if step < self.t0:
            return float(self.s_i)
        u = min(self.n, (step - self.t0) // self.dt)  # updates done so far, minus one
        return self._values[u] if self.stops else self._ramp(u)

    def should_update(self, step: int) -> bool:
        """Return whether masks are recomputed at `step`."""
        return self.t0 <= step <= self.last_step and (step - self.t0) % self.dt == 0

    @property
    def last_step(self) -> int:
        """The last mask-update step, t0 + n * dt."""
        return self.t0 + self.n * self.dt


@dataclass(frozen=True, kw_only=True)
class NarangRamp(_Schedule):
    """Two-slope magnitude-threshold ramp of Narang et al. 2017 ("Exploring Sparsity in RNNs").

    theta = 2 q freq / (2 (ramp - start) + 3 (end - ramp)); phi = slope_mult * theta;
    eps = theta (itr - start + 1) / freq before `ramp`,
    eps = (theta (ramp - start + 1) + phi (itr - ramp + 1)) / freq from `ramp` on.
    Masks are recomputed (|w| <= eps removed) at every multiple of `freq` with start < itr < end.
    With slope_mult = 1.5 the threshold reaches q at `end` (the 2 and 3 of theta's denominator
    assume phi = 1.5 theta); the last update, up to `freq` steps earlier, uses a slightly lower
    threshold, so on weights distributed like the dense model's a bit less than q_percentile %
    is pruned (e.g. 87.5 % with start/ramp/end/freq = 100/1000/4000/100 on fixed weights).

    q comes from a previously trained dense model, as in the paper: pass `q` = {layer type or
    tensor name: value} (`prunekit.prune.narang.narang_q(dense_model, scope)` computes it: the
    `q_percentile`-th percentile of |w|, per layer type "recurrent" / "linear" / "embedding" or
    per tensor). Without `q`, the pruner takes the percentile of each tensor as it is when masks
    are attached, which is only right when pruning starts from a trained model. The pruner keeps
    the q values in its state_dict. An embedding scored per column (`scope.group_embedding`)
    compares each column's mean |w| with eps.

    Args:
        start: start_itr (>= 0).
        ramp: ramp_itr, in [start, end].
        end: end_itr (> start).
        freq: steps between updates (>= 1).
        slope_mult: phi / theta (> 0; the paper uses 1.5 to 2).
        q_percentile: which percentile of |w| gives q, in (0, 100].
        q: {"recurrent" | "linear" | "embedding" | tensor name: q value > 0} from a trained dense
            model (a tensor's own name wins over its type), or None (see above).
    """

    kind: ClassVar[str] = "threshold"

    start: int
    ramp: int
    end: int
    freq: int = 100
    slope_mult: float = 1.5
    q_percentile: float = 90.0
    q: dict[str, float] | None = None

    def __post_init__(self) -> None:
        _check_int("start", self.start, 0, 0)
        _check_int("freq", self.freq, 1, 100)
        _check_int("end", self.end, self.start + 1, self.start + 10 * self.freq)
        _check_int("ramp", self.ramp, self.start, self.start)
        if self.ramp > self.end:
            raise PrunekitError(
                f"ramp={self.ramp!r} must be <= end={self.end!r}: the ramp starts before pruning ends"
            )
        _check_positive("slope_mult", self.slope_mult, 1.5)
        q = self.q_percentile
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q <= 100:
            raise PrunekitError(f"q_percentile={q!r} must be in (0, 100]: e.g. q_percentile=90")
        if not self._update_steps():
            raise PrunekitError(
                f"NarangRamp(start={self.start}, end={self.end}, freq={self.freq}) never updates: "
                "put a multiple of freq strictly between start and end"
            )
        if self.q is not None:
            _check_q(self.q)
            object.__setattr__(self, "q", {str(k): float(v) for k, v in self.q.items()})

    def _update_steps(self) -> range:
        first = (self.start // self.freq + 1) * self.freq
        return range(first, self.end, self.freq)

    def threshold(self, step: int, q: float) -> float:
        """Return Narang's threshold eps at `step` for a tensor whose q value is `q`."""
        if step < self.start:
            return 0.0
        theta = 2.0 * q * self.freq / (2 * (self.ramp - self.start) + 3 * (self.end - self.ramp))
        phi = self.slope_mult * theta
        if step < self.ramp:
            return theta * (step - self.start + 1) / self.freq
        return (theta * (self.ramp - self.start + 1) + phi * (step - self.ramp + 1)) / self.freq

    def __call__(self, step: int) -> float:
        """Return the threshold at `step` in units of q (threshold(step, q=1)); not a sparsity."""
        return self.threshold(step, 1.0)

    def should_update(self, step: int) -> bool:
        """Return whether masks are recomputed at `step`."""
        return self.start < step < self.end and step % self.freq == 0

    @property
    def last_step(self) -> int:
        """The last mask-update step (the last multiple of freq before end)."""
        return self._update_steps()[-1]


@dataclass(frozen=True, kw_only=True)
class IHT(_Schedule):
    """Iterative hard thresholding, the middle stage of FastGRNN's LSQ training (seed 002).

    Steps [0, start) train dense; in [start, end) the weights are projected onto their top
    `density` fraction by magnitude at every step t with t % every == 0 (EdgeML's `trimlevel`),
    the support staying fixed in between; from `end` on the last support is frozen (sparse
    retraining). The step before each projection after the first opens the masks (the pruned
    weights are still zero, so the forward pass is unchanged) so that the projection step's
    gradient step is dense and the support can change, as in IHT. (While open, the Pruner's
    `sparsity()` reads 0; the weights still hold the zeros.) Unlike EdgeML's trainer, the optimizer
    state of pruned weights is zeroed at each projection, as for every prunekit schedule.

    Args:
        density: the paper's s, the fraction of each tensor KEPT, in (0, 1].
        start: first step of stage 2 (>= 0).
        end: first step of stage 3 (> start).
        every: steps between projections (>= 1; EdgeML uses 15).
    """

    density: float
    start: int
    end: int
    every: int = 15

    def __post_init__(self) -> None:
        d = self.density
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0.0 < d <= 1.0:
            raise PrunekitError(
                f"density={d!r} must be in (0, 1]: it is the fraction of weights KEPT (the "
                "paper's s), e.g. density=0.3"
            )
        _check_int("start", self.start, 0, 0)
        _check_int("every", self.every, 1, 15)
        _check_int("end", self.end, self.start + 1, self.start + 10 * self.every)
        if not self._projections():
            raise PrunekitError(
                f"IHT(start={self.start}, end={self.end}, every={self.every}) never projects: "
                "put a multiple of every in [start, end)"
            )

    @classmethod
    def thirds(cls, density: float, total_steps: int, every: int = 15) -> IHT:
        """EdgeML's split of `total_steps` into dense / IHT / sparse-retrain thirds."""
        _check_int("total_steps", total_steps, 3, 300)
        return cls(density=density, start=total_steps // 3, end=2 * total_steps // 3, every=every)

    def _projections(self) -> range:
        first = -(-self.start // self.every) * self.every  # the first multiple of every >= start
        return range(first, self.end, self.every)

    def __call__(self, step: int) -> float:
        """Return the target sparsity (1 - density) once projections have begun, else 0."""
        return float(1.0 - self.density) if step >= self._projections()[0] else 0.0

    def should_update(self, step: int) -> bool:
        """Return whether the weights are projected at `step`."""
        return step in self._projections()

    def opens_after(self, step: int) -> bool:
        """Open the masks before every projection except the first (masks are all-ones then)."""
        return step + 1 in self._projections()[1:]

    @property
    def last_step(self) -> int:
        """The last projection step."""
        return self._projections()[-1]


Schedule = OneShot | Cubic | NarangRamp | IHT
SCHEDULES: dict[str, type[_Schedule]] = {c.__name__: c for c in (OneShot, Cubic, NarangRamp, IHT)}


def schedule_from_dict(d: dict[str, Any]) -> Schedule:
    """Rebuild any schedule from its `to_dict()`.

    Raises:
        PrunekitError: an unknown `_type` or bad fields.
    """
    type_name, _ = unpack(d, dict.fromkeys(SCHEDULES, _VERSION))
    return SCHEDULES[type_name].from_dict(d)


def factorized_rank_fraction(s: float, a: int, b: int) -> float:
    """Convert a parameter sparsity into the fraction of SVD ranks to remove (seed 004 eq. 5).

    W (a x b) is stored as U (a x r), d (r) and V (r x b) with r = min(a, b). Keeping k ranks costs
    k (a + b) parameters (d folds into U at export). Asking k (a + b) = (1 - s) a b and writing
    k = (1 - s_hat) r with a the larger dimension (so r = b) gives
    s_hat = 1 - a (1 - s) / (a + b). Even s = 0 removes b / (a + b) of the ranks, because the full-rank
    factorization is larger than W.

    Args:
        s: target parameter sparsity of W, in [0, 1).
        a: one dimension of W (>= 1); the larger of `a` and `b` is used as eq. 5's a.
        b: the other dimension of W (>= 1).

    Returns:
        s_hat, the fraction of the r = min(a, b) ranks to remove.

    Raises:
        PrunekitError: s outside [0, 1) or a dimension < 1.
    """
    _check_fraction("s", s)
    _check_int("a", a, 1, 512)
    _check_int("b", b, 1, 512)
    big, small = max(a, b), min(a, b)
    return 1.0 - big * (1.0 - s) / (big + small)


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (the one rounding rule used for counts)."""
    return int(math.floor(x + 0.5))
