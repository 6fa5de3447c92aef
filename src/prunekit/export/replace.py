"""Swap submodules of a model in place: by a conversion function, or one at a dotted path."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Convert = Callable[[str, nn.Module], nn.Module | None]


def replace_modules(model: nn.Module, convert: Convert) -> dict[str, nn.Module]:
    """Replace every submodule for which `convert(name, module)` returns a module (in place).

    Submodules are visited parent-first; a replaced module's own children are not visited. A module
    reachable under several names is converted once and the result shared.

    Args:
        model: the model to edit (its root is never replaced).
        convert: (qualified name, module) -> replacement, or None to keep the module and visit its
            children.

    Returns:
        Qualified name -> replacement, for every replaced submodule.
    """
    done: dict[int, nn.Module | None] = {}
    replaced: dict[str, nn.Module] = {}

    def visit(prefix: str, parent: nn.Module) -> None:
        for child_name, child in list(parent.named_children()):
            name = f"{prefix}{child_name}"
            if id(child) not in done:
                done[id(child)] = convert(name, child)
            new = done[id(child)]
            if new is None:
                visit(f"{name}.", child)
            else:
                setattr(parent, child_name, new)
                replaced[name] = new

    visit("", model)
    return replaced


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted `path` (not the root) by `module`."""
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, module)
