"""Arguments and checks shared by several subcommands."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import yaml

from prunekit.config import RunConfig, load_recipe
from prunekit.errors import PrunekitError
from prunekit.recipes import resolve_recipe


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """--recipe, --set and --data: the ways to configure a run."""
    parser.add_argument(
        "--recipe", help="YAML recipe or a built-in name such as demo (default: demo)"
    )
    parser.add_argument(
        "--data",
        metavar="CORPUS",
        help="the corpus: a folder, a text file, 'shakespeare' or 'web-bible' "
        "(same as --set data.corpus=CORPUS)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set train.steps=100 (repeatable)",
    )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ["train.steps=100", ...] into {"train.steps": 100} (values parsed as YAML scalars).

    Raises:
        PrunekitError: a pair without "=" or a key, or a value that is not valid YAML.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PrunekitError(f"--set {pair!r} must look like KEY=VALUE, e.g. train.steps=100")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except (yaml.YAMLError, RecursionError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise PrunekitError(
                f"--set {pair!r}: the value is not valid YAML ({first}): quote it or fix it"
            ) from None
    return out


def recipe_from_args(args: argparse.Namespace, default: str = "demo") -> RunConfig:
    """Load --recipe (a file or a built-in name; `default` when absent) with the --set overrides
    (and --data) applied.

    Raises:
        PrunekitError: --data and --set data.corpus naming different corpora.
    """
    overrides = parse_overrides(args.set)
    data = getattr(args, "data", None)
    if data is not None:
        other = overrides.get("data.corpus")
        if other is not None and str(other) != data:
            raise PrunekitError(
                f"--data {data} and --set data.corpus={other} disagree: pass only one of them"
            )
        overrides["data.corpus"] = data
    return load_recipe(resolve_recipe(args.recipe, default), overrides)


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work starts, an output folder that is a file or cannot be written.

    Nothing is created: the nearest existing folder on the way to `path` is probed with an
    anonymous temporary file.

    Raises:
        PrunekitError: `path` (or a parent) is a file, or the folder is not writable.
    """
    path = Path(path)
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise PrunekitError(
            f"{flag} {path}: {probe} is a file, not a folder: pass a folder path (or move the file)"
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise PrunekitError(
            f"{flag} {path} is not writable ({exc.strerror or type(exc).__name__} in {probe}): "
            "pass a folder you can write to"
        ) from None
    return path
