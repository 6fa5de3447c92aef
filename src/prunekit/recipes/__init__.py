"""Built-in YAML recipes."""

from pathlib import Path

RECIPES = Path(__file__).parent


def builtin(name: str) -> Path:
    """Path of the built-in recipe `name` (e.g. "demo")."""
    return RECIPES / f"{name}.yaml"
