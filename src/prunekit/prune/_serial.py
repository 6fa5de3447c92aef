"""Versioned `{"_type", "_version", "_data"}` dictionaries shared by the pruning configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prunekit.errors import PrunekitError


def pack(type_name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Wrap `data` as a versioned, JSON-able dictionary.

    Args:
        type_name: the class name written as `_type`.
        version: the format version written as `_version`.
        data: the JSON-able fields.

    Returns:
        `{"_type": type_name, "_version": version, "_data": data}`.
    """
    return {"_type": type_name, "_version": version, "_data": data}


def unpack(d: Any, allowed: Mapping[str, int]) -> tuple[str, dict[str, Any]]:
    """Check a versioned dictionary and return its type name and data.

    Args:
        d: what `pack` returned (possibly after a JSON round trip).
        allowed: type name -> the version this prunekit reads.

    Returns:
        `(type_name, data)`.

    Raises:
        PrunekitError: not a dict of that shape, an unknown `_type` or an unsupported `_version`.
    """
    if not isinstance(d, Mapping) or not {"_type", "_version", "_data"} <= set(d):
        raise PrunekitError(
            f"expected a dict with keys _type, _version, _data, got {d!r}: "
            "pass what to_dict() returned"
        )
    type_name = d["_type"]
    if type_name not in allowed:
        known = ", ".join(sorted(allowed))
        raise PrunekitError(f"_type={type_name!r} is unknown here: expected one of {known}")
    if d["_version"] != allowed[type_name]:
        raise PrunekitError(
            f"{type_name} _version={d['_version']!r} is not supported: this prunekit reads "
            f"version {allowed[type_name]}; re-create the config with this version"
        )
    data = d["_data"]
    if not isinstance(data, Mapping):
        raise PrunekitError(f"{type_name} _data={data!r} must be a dict of fields")
    return type_name, dict(data)
