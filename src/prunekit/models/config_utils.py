"""Shared validation for model config dataclasses: one-line `PrunekitError`s naming the fix."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from prunekit.errors import PrunekitError

C = TypeVar("C")


def check_int(name: str, value: Any, lo: int, example: int) -> None:
    """Raise unless `value` is an int (not a bool) >= `lo`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise PrunekitError(
            f"model.{name}={value!r} must be an integer >= {lo}: set e.g. model.{name}={example}"
        )


def check_prob(name: str, value: Any, example: float) -> float:
    """Raise unless `value` is a number in [0, 1); return it as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise PrunekitError(
            f"model.{name}={value!r} must be a number in [0, 1): set e.g. model.{name}={example}"
        )
    return float(value)


def check_bool(name: str, value: Any) -> None:
    """Raise unless `value` is a bool."""
    if not isinstance(value, bool):
        raise PrunekitError(f"model.{name}={value!r} must be true or false: set model.{name}=false")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise PrunekitError(f"model.{name}={value!r} is not supported: choose one of {allowed}")


def config_from_dict(cls: type[C], data: Mapping[str, Any], arch: str) -> C:
    """Build the config dataclass `cls` from `data`, rejecting unknown and missing keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            allowed = ", ".join(fields)
            raise PrunekitError(
                f"unknown key model.{key} for model.arch={arch!r}: allowed keys are {allowed}"
            )
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in data:
            raise PrunekitError(f"model.{name} is missing: set model.{name} in the model config")
    return cls(**data)
