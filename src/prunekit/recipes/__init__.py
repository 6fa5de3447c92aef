"""Built-in YAML recipes, usable by name wherever a command takes `--recipe` (e.g. `--recipe demo`)."""

from pathlib import Path

from prunekit.errors import PrunekitError

RECIPES = Path(__file__).parent


def builtin(name: str) -> Path:
    """Path of the built-in recipe `name` (e.g. "demo")."""
    return RECIPES / f"{name}.yaml"


def builtin_names() -> list[str]:
    """Names of the built-in recipes, e.g. ['demo', 'paper', 'paper_tiny']."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def resolve_recipe(recipe: str | None, default: str) -> Path:
    """A recipe file, or the file of a built-in recipe name; `default` (a name) when None.

    Raises:
        PrunekitError: neither a file nor a built-in recipe.
    """
    if recipe is None:
        return builtin(default)
    path = Path(recipe)
    if path.is_file():
        return path
    if "/" not in recipe and builtin(recipe).is_file():
        return builtin(recipe)
    raise PrunekitError(
        f"recipe {recipe} does not exist: pass a YAML file or a built-in name "
        f"({', '.join(builtin_names())})"
    )
