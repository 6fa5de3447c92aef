"""Recipes: YAML files validated on load into typed configs."""

from prunekit.config.recipe import (
    DataConfig,
    PruneSection,
    RunConfig,
    SpeedConfig,
    TrainConfig,
    load_recipe,
    parse_recipe,
)

__all__ = [
    "DataConfig",
    "PruneSection",
    "RunConfig",
    "SpeedConfig",
    "TrainConfig",
    "load_recipe",
    "parse_recipe",
]
