"""Pruning methods: what is removed as a whole (seed 004 §3.2).

A method turns element scores into rankings (`Unit`s) over its own structure; `budget` then picks
the lowest items by count. Methods are registered by name and built from `method_args`.

- `unstructured`: every element is an item.
- `structured(reduce="mean"|"min"|"max", granularity="auto"|"rows"|"cols", consumers={})`:
  groups (heads, FFN units, gate-aware RNN units, rows, columns; see `groups.py`), scored by the
  mean (default; the paper's best), min or max of their members' scores. The target sparsity is
  the fraction of groups removed in each family (per-layer budget).
- `factorized(embeddings=True)`: replaces every nn.Linear, Hugging Face Conv1D, nn.Conv1d /
  Conv2d (groups=1) and nn.Embedding in scope by its SVD (`FactorizedLinear`, `FactorizedConv`,
  `FactorizedEmbedding`) and ranks the singular values d; the target
  parameter sparsity s becomes a rank fraction by seed 004 eq. 5. Each layer keeps rank >= 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.prune.budget import Unit
from prunekit.prune.channels import CONVS
from prunekit.prune.factorized import (
    FactorizedConv,
    FactorizedEmbedding,
    FactorizedLinear,
    _Factors,
)
from prunekit.prune.groups import GroupSpec, find_groups, links
from prunekit.prune.masks import get_mask
from prunekit.prune.schedules import factorized_rank_fraction, round_half_up
from prunekit.prune.scope import Alias, Target, _is_conv1d

Scores = Mapping[str, Tensor]
Keep = Mapping[str, Tensor]


@dataclass
class Setup:
    """What a method did to the model when the pruner attached.

    Attributes:
        targets: the scored tensors (after any module replacement).
        dependents: tensors masked along with groups but never scored (outside the scope).
        replaced: id(old Parameter) -> the Parameters that replace it (for optimizers).
        readers: producer module -> the module reading its pruned units (RNN units, conv
            channels, embedding columns), recorded on the masks for export.
    """

    targets: list[Target]
    dependents: list[Target] = field(default_factory=list)
    replaced: dict[int, list[nn.Parameter]] = field(default_factory=dict)
    readers: dict[str, str] = field(default_factory=dict)


class Method:
    """Base class: how scored tensors are grouped into rankings."""

    name: ClassVar[str] = ""

    def setup(self, model: nn.Module, targets: list[Target]) -> Setup:
        """Validate the scope for this method and prepare the model (before masks are attached).

        Raises:
            PrunekitError: a tensor the method cannot prune; nothing is modified then.
        """
        return Setup(list(targets))

    def units(self, targets: list[Target], scores: Scores, keep: Keep) -> list[Unit]:
        """Build the rankings from element scores and the current keep-masks (by target name)."""
        raise NotImplementedError

    @property
    def groups(self) -> list[GroupSpec]:
        """The structured families (empty for element- or rank-wise methods)."""
        return []


_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Decorator: make a `Method` dataclass available as `PruneConfig(method=name)`."""

    def decorate(cls: type[Method]) -> type[Method]:
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def method_names() -> list[str]:
    """Return the registered method names, sorted."""
    return sorted(_METHODS)


def make_method(name: str, args: Mapping[str, Any] | None = None) -> Method:
    """Build the method registered as `name` from its `method_args`.

    Raises:
        PrunekitError: an unknown method or argument, or a bad argument value.
    """
    if name not in _METHODS:
        known = ", ".join(repr(n) for n in method_names())
        raise PrunekitError(
            f"method={name!r} is unknown: choose one of {known} (or add one with @register_method)"
        )
    cls = _METHODS[name]
    allowed = (
        [f.name for f in fields(cls) if f.init] if hasattr(cls, "__dataclass_fields__") else []
    )
    for key in args or {}:
        if key not in allowed:
            listed = ", ".join(allowed) or "none"
            raise PrunekitError(
                f"method_args has {key!r}, which method={name!r} does not take: allowed: {listed}"
            )
    return cls(**dict(args or {}))


def _masked(scores: Tensor, keep: Tensor) -> Tensor:
    return scores.reshape(-1).to(torch.float32).masked_fill(~keep.reshape(-1), float("-inf"))


def _clear(name: str, shape: torch.Size) -> Callable[[Tensor, dict[str, Tensor]], None]:
    def write(removed: Tensor, keep: dict[str, Tensor]) -> None:
        keep[name] &= ~removed.view(shape)

    return write


@register_method("unstructured")
@dataclass(kw_only=True)
class Unstructured(Method):
    """Every element is ranked on its own (seed 004 §3.2.1)."""

    def units(self, targets: list[Target], scores: Scores, keep: Keep) -> list[Unit]:
        """One unit per tensor; each element is an item of size 1."""
        out = []
        for t in targets:
            n = keep[t.name].numel()
            out.append(
                Unit(
                    t.name,
                    _masked(scores[t.name], keep[t.name]),
                    1,
                    n,
                    lambda s, n=n: round_half_up(s * n),
                    _clear(t.name, keep[t.name].shape),
                )
            )
        return out


def _gather(t: Tensor, dim: int, idx: Tensor) -> Tensor:
    """Slices idx (n, k) of t along dim, as (n, k * other)."""
    n = idx.shape[0]
    return t.index_select(dim, idx.reshape(-1)).movedim(dim, 0).reshape(n, -1)


@register_method("structured")
@dataclass(kw_only=True)
class Structured(Method):
    """Rows, columns or coupled units removed as wholes (seed 004 §3.2.2).

    Args:
        reduce: group score from its members' scores: "mean" (the paper's best), "min", "max".
        granularity: "auto" (heads, FFN units, RNN units, else rows), "rows" or "cols".
        consumers: producer -> the layer reading its units: an RNN's last layer -> a Linear
            (auto-detected by sibling name otherwise); a conv or an embedding -> a conv, Linear
            or LSTM/GRU reading its channels (see `prunekit.prune.channels`). Export remembers
            them (they are recorded on the masks).
    """

    reduce: str = "mean"
    granularity: str = "auto"
    consumers: dict[str, str] = field(default_factory=dict)
    _groups: list[GroupSpec] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.reduce not in ("mean", "min", "max"):
            raise PrunekitError(
                f"method_args reduce={self.reduce!r} is not supported: choose 'mean', 'min' or 'max'"
            )
        if self.granularity not in ("auto", "rows", "cols"):
            raise PrunekitError(
                f"method_args granularity={self.granularity!r} is not supported: "
                "choose 'auto', 'rows' or 'cols'"
            )
        if not isinstance(self.consumers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.consumers.items()
        ):
            raise PrunekitError(
                f"method_args consumers={self.consumers!r} must map module names (an RNN, conv "
                "or embedding) to the module reading it, e.g. {'rnn': 'lm_head'}"
            )

    def setup(self, model: nn.Module, targets: list[Target]) -> Setup:
        """Find the group families (see `find_groups`)."""
        plan = find_groups(model, targets, self.granularity, self.consumers)
        self._groups = plan.groups
        return Setup(list(targets), plan.dependents, readers=links(plan))

    @property
    def groups(self) -> list[GroupSpec]:
        """The group families found at setup."""
        return list(self._groups)

    def _unit(self, spec: GroupSpec, scores: Scores, keep: Keep) -> Unit:
        n = spec.n_groups
        device = keep[spec.members[0].param].device
        idx = [m.index_tensor(device) for m in spec.members]
        parts, alive = [], torch.zeros(n, dtype=torch.bool, device=device)
        for m, i in zip(spec.members, idx, strict=True):
            alive |= _gather(keep[m.param], m.dim, i).any(dim=1)
            if m.scored:
                parts.append(_gather(scores[m.param].to(torch.float32), m.dim, i))
        member_scores = torch.cat(parts, dim=1)  # (n, elements per group)
        reduce = {"mean": torch.mean, "min": torch.amin, "max": torch.amax}[self.reduce]
        group = reduce(member_scores, dim=1).masked_fill(~alive, float("-inf"))  # (n,)

        def write(removed: Tensor, out: dict[str, Tensor]) -> None:
            for m, i in zip(spec.members, idx, strict=True):
                out[m.param].index_fill_(m.dim, i[removed].reshape(-1), False)

        size = member_scores.shape[1]
        return Unit(spec.name, group, size, n * size, lambda s: round_half_up(s * n), write)

    def units(self, targets: list[Target], scores: Scores, keep: Keep) -> list[Unit]:
        """One unit per group family; each group is an item."""
        return [self._unit(spec, scores, keep) for spec in self._groups]


def _module_name(alias: Alias) -> str:
    return alias.name.rpartition(".")[0]


@register_method("factorized")
@dataclass(kw_only=True)
class Factorized(Method):
    """Rank pruning of SVD-factorized layers (seed 004 §3.2.3, eq. 5).

    Args:
        embeddings: also factorize nn.Embedding tensors in scope (else they must be excluded).
    """

    embeddings: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.embeddings, bool):
            raise PrunekitError(f"method_args embeddings={self.embeddings!r} must be true or false")

    def _problem(self, t: Target) -> tuple[str, str] | None:
        """(module name, why) if `t` cannot be factorized, else None."""
        ok = (nn.Embedding,) if self.embeddings else ()
        for a in t.aliases:
            m, what = a.module, type(a.module).__name__
            if isinstance(m, CONVS) and (m.groups != 1 or m.padding_mode != "zeros"):
                return _module_name(a), f"{what} with groups={m.groups}"
            if not (isinstance(m, (nn.Linear, *CONVS, *ok)) or _is_conv1d(m)):
                return _module_name(a), what
        return None

    def _check(self, model: nn.Module, targets: list[Target]) -> None:
        problems = dict(p for p in map(self._problem, targets) if p is not None)
        if problems:
            n = len(problems)
            listed = ", ".join(f"{name} ({why})" for name, why in problems.items())
            raise PrunekitError(
                f"method=factorized cannot factorize {n} layer{'s' if n > 1 else ''}: {listed}; "
                "it supports nn.Linear, Hugging Face Conv1D, nn.Conv1d / Conv2d with groups=1 "
                "and nn.Embedding (method_args embeddings=true): exclude "
                f"{'them' if n > 1 else 'it'} (scope.exclude={list(problems)}) or use "
                "method=unstructured"
            )
        for t in targets:
            for a in t.aliases:
                if a.module is model:
                    raise PrunekitError(
                        "method=factorized cannot replace the model itself: wrap it in a parent "
                        "module"
                    )
                if get_mask(a.module, a.attr) is not None:
                    raise PrunekitError(
                        f"{t.name!r} already has a pruning mask: factorize a model without masks "
                        "(call prunekit.prune.finalize(model) first)"
                    )

    @staticmethod
    def _base(t: Target) -> _Factors:
        """The full-rank factorization of the canonical alias (the embedding if tied to one)."""
        emb = next((a.module for a in t.aliases if isinstance(a.module, nn.Embedding)), None)
        if emb is not None:
            return FactorizedEmbedding.from_embedding(emb)
        m = t.aliases[0].module
        if isinstance(m, CONVS):
            return FactorizedConv.from_conv(m)
        if _is_conv1d(m):
            return FactorizedLinear.from_conv1d(m)
        return FactorizedLinear.from_linear(m)  # type: ignore[arg-type]

    def _factorize(self, t: Target) -> tuple[list[nn.Module], tuple[int, int]]:
        """New modules for every alias of t, sharing one set of factors."""
        base = self._base(t)
        new: list[nn.Module] = []
        for a in t.aliases:
            m = a.module
            emb = isinstance(base, FactorizedEmbedding)
            if isinstance(m, nn.Embedding) if emb else m is t.aliases[0].module:
                new.append(base)
            else:  # a tied Linear: same factors, its own bias
                new.append(FactorizedLinear.from_factors(base.U, base.d, base.V, m.bias))
        return new, (int(base.U.shape[0]), int(base.V.shape[1]))

    def setup(self, model: nn.Module, targets: list[Target]) -> Setup:
        """Replace each in-scope Linear/Embedding by its full-rank factorization."""
        self._check(model, targets)
        places: dict[int, list[tuple[nn.Module, str]]] = {}
        for _, m in model.named_modules(remove_duplicate=False):
            for child_name, child in m.named_children():
                places.setdefault(id(child), []).append((m, child_name))
        out, replaced = [], {}
        for t in targets:
            new, dense_shape = self._factorize(t)
            for a, m in zip(t.aliases, new, strict=True):
                for parent, child_name in places.get(id(a.module), []):
                    setattr(parent, child_name, m)
            aliases = [
                Alias(f"{_module_name(a)}.d", m, "d") for a, m in zip(t.aliases, new, strict=True)
            ]
            base = new[0]
            replaced[id(t.param)] = [base.U, base.d, base.V]
            out.append(Target(aliases[0].name, aliases, "factor", dense_shape=dense_shape))
        return Setup(out, [], replaced)

    def units(self, targets: list[Target], scores: Scores, keep: Keep) -> list[Unit]:
        """One unit per factorized layer; each rank (a column of U, d_i, a row of V) is an item."""
        out = []
        for t in targets:
            r = keep[t.name].numel()
            a, b = t.dense_shape  # type: ignore[misc]

            def remove(s: float, a: int = a, b: int = b, r: int = r) -> int:
                return min(r - 1, round_half_up(factorized_rank_fraction(s, a, b) * r))

            unit = Unit(
                t.name,
                _masked(scores[t.name], keep[t.name]),
                a + b + 1,
                a * b,
                remove,
                _clear(t.name, keep[t.name].shape),
                min_keep=1,
            )
            out.append(unit)
        return out
