"""Which tensors are pruned: module types, name patterns, the output layer, tied weights.

A `Target` is one prunable tensor, named by its first (canonical) parameter name, with every place
it is reachable from (`aliases`: a weight tied between `embed` and `lm_head` is one target with two
aliases, scored and masked once). Biases, norms and positional embeddings are never targets.

Patterns are `fnmatch` patterns matched against parameter names (`blocks.0.ffn.fc_in.weight`) and
module names (`blocks.0.ffn.fc_in`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import PrunekitError
from prunekit.prune._serial import pack, unpack
from prunekit.prune.masks import get_mask, original

log = logging.getLogger(__name__)

_VERSION = 1
DEFAULT_TYPES = ("Linear", "Embedding", "LSTM", "GRU", "Conv1D", "Conv1d", "Conv2d")
POSITIONAL = ("rel_k", "rel_v", "rel_pos", "wpe", "pos_emb", "pos_embed", "position_embeddings")
OUTPUT_NAMES = ("lm_head",)


def _is_conv1d(m: nn.Module) -> bool:
    """Hugging Face GPT-2's `Conv1D`: a Linear whose weight is stored (in, out)."""
    w = getattr(m, "weight", None)
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and isinstance(w, Tensor)


_TYPE_TESTS: dict[str, Callable[[nn.Module], bool]] = {
    "Linear": lambda m: isinstance(m, nn.Linear),
    "Embedding": lambda m: isinstance(m, nn.Embedding),
    "LSTM": lambda m: isinstance(m, nn.LSTM),
    "GRU": lambda m: isinstance(m, nn.GRU),
    "RNN": lambda m: type(m) is nn.RNN,
    "Conv1D": _is_conv1d,
    "Conv1d": lambda m: isinstance(m, nn.Conv1d),
    "Conv2d": lambda m: isinstance(m, nn.Conv2d),
}
# A type name users confuse with another one, and what each means.
_TWINS = {
    "Conv1D": ("Conv1d", "Hugging Face's transposed Linear (GPT-2)", "torch's nn.Conv1d"),
    "Conv1d": ("Conv1D", "torch's nn.Conv1d", "Hugging Face's transposed Linear (GPT-2)"),
}


def _as_tuple(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise PrunekitError(f"scope.{name}={value!r} must be a list of strings, e.g. ['blocks.*']")
    if not all(isinstance(v, str) and v for v in value):
        raise PrunekitError(f"scope.{name}={value!r} must hold non-empty strings only")
    return tuple(value)


@dataclass(frozen=True, kw_only=True)
class ScopeConfig:
    """What to prune.

    Args:
        module_types: module classes whose weights are pruned, from Linear, Embedding, LSTM, GRU,
            RNN, Conv1D (Hugging Face's transposed Linear), Conv1d and Conv2d (torch's
            convolutions, weight (out, in / groups, *kernel)). LSTM/GRU/RNN contribute every
            `weight_ih_l*`, `weight_hh_l*` (and `weight_hr_l*`), never biases. A weight that
            carries another parametrization (e.g. weight_norm) is left out, with a warning.
        include: patterns; when non-empty only matching tensors are pruned.
        exclude: patterns of tensors never pruned.
        exclude_output: skip the output layer (`lm_head`, else the last Linear). A tied output
            weight is the embedding's tensor, so it leaves the scope with it.
        group_embedding: score nn.Embedding weights per column, averaged over the vocabulary, so
            pruning never removes a whole subword (seed 004 §4.1.1).
        skip_positional: never prune positional embeddings (modules named rel_k, wpe, ...).
    """

    module_types: tuple[str, ...] = DEFAULT_TYPES
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_output: bool = False
    group_embedding: bool = True
    skip_positional: bool = True

    def __post_init__(self) -> None:
        for name in ("module_types", "include", "exclude"):
            object.__setattr__(self, name, _as_tuple(name, getattr(self, name)))
        for t in self.module_types:
            if t not in _TYPE_TESTS:
                known = ", ".join(_TYPE_TESTS)
                raise PrunekitError(
                    f"scope.module_types has {t!r}, which cannot be pruned: choose from {known} "
                    "(biases and norms are never pruned)"
                )
        for name in ("exclude_output", "group_embedding", "skip_positional"):
            if not isinstance(getattr(self, name), bool):
                raise PrunekitError(f"scope.{name}={getattr(self, name)!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        """Return `{"_type", "_version", "_data"}` (JSON-able)."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return pack("ScopeConfig", _VERSION, data)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScopeConfig:
        """Rebuild the config `to_dict` returned."""
        _, data = unpack(d, {"ScopeConfig": _VERSION})
        try:
            return cls(**data)
        except TypeError as exc:
            raise PrunekitError(f"bad ScopeConfig fields {sorted(data)}: {exc}") from None


@dataclass
class Alias:
    """One place a target tensor lives: `getattr(module, attr)`, called `name` in the model."""

    name: str
    module: nn.Module
    attr: str


@dataclass
class Target:
    """One prunable tensor.

    Attributes:
        name: canonical parameter name (its first name in `model.named_parameters()` order).
        aliases: every (module, attr) holding it; tied weights have several.
        kind: "linear" (weight (out, in)), "conv1d" (Hugging Face Conv1D, weight (in, out)),
            "conv" (torch Conv1d/Conv2d, weight (out, in / groups, *kernel)), "embedding",
            "rnn" (an LSTM/GRU/RNN weight) or "factor" (the diagonal d of a factorized layer).
        group_vocab: score per column, averaged over rows (embeddings).
        dense_shape: for "factor" targets, the (out, in) shape of the matrix it replaced.
    """

    name: str
    aliases: list[Alias]
    kind: str
    group_vocab: bool = False
    dense_shape: tuple[int, int] | None = None

    @property
    def module(self) -> nn.Module:
        """The module of the canonical alias."""
        return self.aliases[0].module

    @property
    def param(self) -> nn.Parameter:
        """The stored (unmasked) parameter."""
        return original(self.aliases[0].module, self.aliases[0].attr)

    def to_out_in(self, t: Tensor) -> Tensor:
        """View a weight-shaped tensor as (out, in) (transposes Conv1D weights)."""
        return t.t() if self.kind == "conv1d" else t

    def from_out_in(self, t: Tensor) -> Tensor:
        """Inverse of `to_out_in`."""
        return t.t() if self.kind == "conv1d" else t


def plain_name(name: str) -> str:
    """Strip parametrization wrapping: `a.parametrizations.weight.original` -> `a.weight`."""
    return name.replace(".parametrizations.", ".").replace(".original", "")


def _weight_attrs(m: nn.Module, type_name: str) -> list[str]:
    if type_name in ("LSTM", "GRU", "RNN"):
        return [n for n in m._flat_weights_names if n.startswith("weight_")]  # type: ignore[union-attr]
    return ["weight"]


def _kind(m: nn.Module, type_name: str) -> str:
    kinds = {"Linear": "linear", "Conv1D": "conv1d", "Embedding": "embedding"}
    return kinds.get(type_name, "conv" if type_name in ("Conv1d", "Conv2d") else "rnn")


def _foreign_parametrization(m: nn.Module, attr: str) -> bool:
    """True if `m.<attr>` carries a parametrization that is not a prunekit mask (weight_norm)."""
    return parametrize.is_parametrized(m, attr) and get_mask(m, attr) is None


def output_module_name(model: nn.Module) -> str | None:
    """Name of the output layer: a module called `lm_head`, else the last Linear-like module."""
    last = None
    for name, m in model.named_modules():
        if name.rsplit(".", 1)[-1] in OUTPUT_NAMES:
            return name
        if isinstance(m, nn.Linear) or _is_conv1d(m):
            last = name
    return last


def _candidates(model: nn.Module, scope: ScopeConfig) -> list[Target]:
    """Every tensor of the selected module types, tied aliases merged (in module order)."""
    by_id: dict[int, Target] = {}
    for mod_name, m in model.named_modules():
        type_name = next((t for t in scope.module_types if _TYPE_TESTS[t](m)), None)
        if type_name is None:
            continue
        short = mod_name.rsplit(".", 1)[-1]
        if type_name == "Embedding" and scope.skip_positional and short in POSITIONAL:
            continue
        for attr in _weight_attrs(m, type_name):
            if _foreign_parametrization(m, attr):
                log.warning(
                    "%s.%s has another parametrization (e.g. weight_norm) and is not pruned: "
                    "remove it first to prune this tensor",
                    mod_name,
                    attr,
                )
                continue
            p = original(m, attr)
            alias = Alias(f"{mod_name}.{attr}" if mod_name else attr, m, attr)
            if id(p) in by_id:
                by_id[id(p)].aliases.append(alias)
                continue
            by_id[id(p)] = Target(alias.name, [alias], _kind(m, type_name))
    canonical = {id(p): plain_name(n) for n, p in model.named_parameters()}
    for p_id, t in by_id.items():
        first = canonical.get(p_id, t.name)
        t.aliases.sort(key=lambda a: a.name != first)
        t.name = t.aliases[0].name
        is_emb = any(isinstance(a.module, nn.Embedding) for a in t.aliases)
        if is_emb:
            t.kind = "embedding"
        t.group_vocab = scope.group_embedding and is_emb
    return list(by_id.values())


def _matches(pattern: str, name: str) -> bool:
    module_name = name.rsplit(".", 1)[0]
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(module_name, pattern)


def _check_patterns(scope: ScopeConfig, names: list[str]) -> None:
    for field_name in ("include", "exclude"):
        for pat in getattr(scope, field_name):
            if not any(_matches(pat, n) for n in names):
                few = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise PrunekitError(
                    f"scope.{field_name} pattern {pat!r} matches no parameter: "
                    f"available names include {few}"
                )
    for n in names:
        inc = next((p for p in scope.include if _matches(p, n)), None)
        exc = next((p for p in scope.exclude if _matches(p, n)), None)
        if inc is not None and exc is not None:
            raise PrunekitError(
                f"conflicting scopes: {n!r} matches include {inc!r} and exclude {exc!r}: "
                "remove it from one of them"
            )


def _check_type_names(model: nn.Module, scope: ScopeConfig) -> None:
    """Raise when a type name matches nothing but its look-alike does (Conv1D vs Conv1d)."""
    for t, (twin, meaning, twin_meaning) in _TWINS.items():
        if t not in scope.module_types or twin in scope.module_types:
            continue
        mods = list(model.modules())
        if not any(_TYPE_TESTS[t](m) for m in mods) and any(_TYPE_TESTS[twin](m) for m in mods):
            raise PrunekitError(
                f"scope.module_types has {t!r} ({meaning}), which this model does not have; its "
                f"convolutions are {twin!r} ({twin_meaning}): use module_types=[..., {twin!r}]"
            )


def resolve_scope(model: nn.Module, scope: ScopeConfig) -> list[Target]:
    """List the tensors of `model` that `scope` selects, in a deterministic order.

    Args:
        model: any nn.Module (masks may already be attached).
        scope: the selection.

    Returns:
        One `Target` per distinct tensor.

    Raises:
        PrunekitError: a pattern matching no parameter, a name both included and excluded,
            or an empty scope.
    """
    names = [plain_name(n) for n, _ in model.named_parameters(remove_duplicate=False)]
    _check_patterns(scope, names)
    _check_type_names(model, scope)
    out_name = output_module_name(model) if scope.exclude_output else None
    targets = []
    for t in _candidates(model, scope):
        alias_names = [a.name for a in t.aliases]
        if scope.include and not any(_matches(p, n) for p in scope.include for n in alias_names):
            continue
        if any(_matches(p, n) for p in scope.exclude for n in alias_names):
            continue
        if out_name is not None and any(n.rsplit(".", 1)[0] == out_name for n in alias_names):
            if len(t.aliases) > 1:
                log.warning("exclude_output also skips %s, which is tied to %s", t.name, out_name)
            continue
        targets.append(t)
    if not targets:
        raise PrunekitError(
            f"empty pruning scope: no weight of module_types={list(scope.module_types)} is left "
            f"after include={list(scope.include)}, exclude={list(scope.exclude)}, "
            f"exclude_output={scope.exclude_output}: widen the scope"
        )
    return targets
