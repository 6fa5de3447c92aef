"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from prunekit.config import RunConfig, load_recipe
from prunekit.errors import PrunekitError


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """--recipe, --set and --data: the ways to configure a run."""
    parser.add_argument("--recipe", help="YAML recipe (default: the built-in demo recipe)")
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
    """Turn ["train.steps=100", ...] into {"train.steps": 100} (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PrunekitError(f"--set {pair!r} must look like KEY=VALUE, e.g. train.steps=100")
        out[key.strip()] = yaml.safe_load(value)
    return out


def recipe_from_args(args: argparse.Namespace, default: str | None = None) -> RunConfig:
    """Load --recipe (or `default`) with the --set overrides (and --data) applied.

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
    return load_recipe(args.recipe or default, overrides)
