"""`PruneConfig`: criterion x method x schedule x scope x budget, validated when built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prunekit.errors import PrunekitError
from prunekit.prune._serial import pack, unpack
from prunekit.prune.criteria import make_criterion
from prunekit.prune.methods import make_method
from prunekit.prune.schedules import IHT, Cubic, NarangRamp, OneShot, Schedule, schedule_from_dict
from prunekit.prune.scope import ScopeConfig

_VERSION = 1
BUDGETS = ("layer", "global")


def _as_schedule(value: Any) -> Schedule:
    if isinstance(value, OneShot | Cubic | NarangRamp | IHT):
        return value
    if isinstance(value, Mapping) and "_type" in value:
        return schedule_from_dict(dict(value))
    raise PrunekitError(
        f"schedule={value!r} must be OneShot(...), Cubic(...), NarangRamp(...) or IHT(...) "
        "(or what their to_dict() returns)"
    )


def _as_scope(value: Any) -> ScopeConfig:
    if isinstance(value, ScopeConfig):
        return value
    if isinstance(value, Mapping):
        if "_type" in value:
            return ScopeConfig.from_dict(dict(value))
        try:
            return ScopeConfig(**value)
        except TypeError as exc:
            raise PrunekitError(f"bad scope fields {sorted(value)}: {exc}") from None
    raise PrunekitError(f"scope={value!r} must be a ScopeConfig or a dict of its fields")


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """How to prune: which criterion, method, schedule, scope and budget.

    Args:
        criterion: "magnitude", "taylor", "activation" (or a registered name).
        method: "unstructured", "structured", "factorized" (or a registered name).
        method_args: keyword arguments of the method, e.g. {"reduce": "mean"} for structured.
        schedule: OneShot, Cubic, NarangRamp or IHT (or its to_dict()).
        scope: which tensors (a ScopeConfig or a dict of its fields).
        budget: "layer" (every tensor/family reaches the target) or "global" (one ranking over
            the whole scope).

    Raises:
        PrunekitError: any unknown name or bad value, or NarangRamp with anything but
            criterion=magnitude, method=unstructured, budget=layer.
    """

    criterion: str = "magnitude"
    method: str = "unstructured"
    method_args: dict[str, Any] = field(default_factory=dict)
    schedule: Schedule
    scope: ScopeConfig = field(default_factory=ScopeConfig)
    budget: str = "layer"

    def __post_init__(self) -> None:
        make_criterion(self.criterion)
        if not isinstance(self.method_args, Mapping):
            raise PrunekitError(
                f"method_args={self.method_args!r} must be a dict, e.g. {{'reduce': 'mean'}}"
            )
        object.__setattr__(self, "method_args", dict(self.method_args))
        make_method(self.method, self.method_args)
        object.__setattr__(self, "schedule", _as_schedule(self.schedule))
        object.__setattr__(self, "scope", _as_scope(self.scope))
        if self.budget not in BUDGETS:
            raise PrunekitError(
                f"budget={self.budget!r} is not supported: choose 'layer' or 'global'"
            )
        if isinstance(self.schedule, NarangRamp):
            chosen = (self.criterion, self.method, self.budget)
            if chosen != ("magnitude", "unstructured", "layer"):
                raise PrunekitError(
                    f"schedule=NarangRamp thresholds |w| per tensor, so it needs criterion="
                    f"'magnitude', method='unstructured', budget='layer' (got {chosen[0]!r}, "
                    f"{chosen[1]!r}, {chosen[2]!r}): change them or use schedule=Cubic"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return `{"_type", "_version", "_data"}` (JSON-able)."""
        data = {
            "criterion": self.criterion,
            "method": self.method,
            "method_args": dict(self.method_args),
            "schedule": self.schedule.to_dict(),
            "scope": self.scope.to_dict(),
            "budget": self.budget,
        }
        return pack("PruneConfig", _VERSION, data)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneConfig:
        """Rebuild the config `to_dict` returned."""
        _, data = unpack(d, {"PruneConfig": _VERSION})
        try:
            return cls(**data)
        except TypeError as exc:
            raise PrunekitError(f"bad PruneConfig fields {sorted(data)}: {exc}") from None
