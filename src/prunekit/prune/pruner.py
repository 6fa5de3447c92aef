"""`Pruner`: attach masks to a model and update them as the schedule says.

Typical use inside any training loop (the optimizer hooks do the rest):

    pruner = Pruner(model, PruneConfig(criterion="taylor", schedule=Cubic(s_f=0.9, dt=100, n=10)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pruner.attach(optimizer)
    for x, y in batches:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()      # pre-hook: accumulate (g * w)^2; post-hook: pruner.step(t)
        optimizer.zero_grad()

Without `attach(optimizer)`, call `pruner.accumulate()` after `loss.backward()` (data-driven
criteria) and `pruner.step(t)` after `optimizer.step()` yourself, with t = 0, 1, 2, ...; with it,
never call them yourself (the hooks would count twice). The hooks count optimizer steps actually
taken (a step skipped by a GradScaler is not counted); `pruner.next_step` is that counter and is
part of `pruner.state_dict()`.

Attach before wrapping the model in DistributedDataParallel. With method=factorized, attach
replaces modules, so build the optimizer after `attach()` or pass it to `attach(optimizer)`,
which swaps the replaced parameters in its param groups. For the other methods parameters keep
their identity and an existing optimizer keeps working.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.prune.budget import select_global, select_layer, select_threshold
from prunekit.prune.config import PruneConfig
from prunekit.prune.criteria import make_criterion
from prunekit.prune.groups import GroupSpec
from prunekit.prune.masks import Mask, attach_mask, finalize, update_mask_
from prunekit.prune.methods import make_method
from prunekit.prune.narang import target_q
from prunekit.prune.schedules import _check_fraction
from prunekit.prune.scope import Target, resolve_scope
from prunekit.prune.size import count_params, sparsity_for_size
from prunekit.prune.stats import all_reduce_mean_

__all__ = ["PruneConfig", "Pruner", "count_params", "sparsity_for_size"]

log = logging.getLogger(__name__)
STATE_FORMAT = "prunekit.pruner"
STATE_VERSION = 1


def _n_inputs(t: Target) -> int | None:
    """Input features of a Linear-like target (whose inputs are observed), else None."""
    if t.kind in ("linear", "conv1d"):
        return int(t.to_out_in(t.param).shape[1])
    return None


def _swap_params(optimizer: torch.optim.Optimizer, replaced: dict[int, list[nn.Parameter]]) -> None:
    """Replace, in every param group, each replaced parameter by its substitutes."""
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            if id(p) in replaced:
                optimizer.state.pop(p, None)
                params.extend(replaced[id(p)])
            else:
                params.append(p)
        group["params"] = params


def _input_hook(pruner: Pruner, target: str, module: nn.Module) -> Any:
    """Forward pre-hook feeding a Linear's inputs to the criterion (train mode or calibration)."""
    pruner_ref, module_ref = weakref.ref(pruner), weakref.ref(module)

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
        p = pruner_ref()
        if p is None or mod is not module_ref() or not (mod.training or p._calibrating):
            return  # a deepcopy of the module, a dropped pruner, or an eval pass
        p.criterion.accumulate_inputs(args[0], p._stats[target])

    return hook


class Pruner:
    """Prune `model` by `config`: masks, scores, schedule, optimizer hooks, resumable state.

    Args:
        model: any nn.Module; masks are attached by `attach()`.
        config: the PruneConfig.
    """

    def __init__(self, model: nn.Module, config: PruneConfig):
        if not isinstance(config, PruneConfig):
            raise PrunekitError(f"config must be a PruneConfig, got {type(config).__name__}")
        self.model = model
        self.config = config
        self.criterion = make_criterion(config.criterion)
        self.method = make_method(config.method, config.method_args)
        self.targets: list[Target] = []
        self.dependents: list[Target] = []
        self._masks: dict[str, Mask] = {}
        self._stats: dict[str, dict[str, Tensor]] = {}
        self._q: dict[str, float] = {}
        self._replaced: dict[int, list[nn.Parameter]] = {}
        self._optimizers: list[torch.optim.Optimizer] = []
        self._handles: list[Any] = []
        self._next_step = 0
        self._n_updates = 0
        self._calibrating = False
        self._attached = False
        self._hooked = False

    # ---------------------------------------------------------------- set-up

    def attach(self, optimizer: torch.optim.Optimizer | None = None) -> Pruner:
        """Add all-ones masks to the scope (factorizing first if asked) and register hooks.

        Args:
            optimizer: optional; its state is zeroed for pruned weights, and its step hooks
                accumulate gradients and call `step()` with an internal counter.

        Returns:
            self.

        Raises:
            PrunekitError: already attached, or a scope/method problem (nothing is modified).
        """
        if self._attached:
            raise PrunekitError(
                "this Pruner is already attached: call attach() once, and add_optimizer() for "
                "more optimizers"
            )
        setup = self.method.setup(self.model, resolve_scope(self.model, self.config.scope))
        self.targets, self.dependents = setup.targets, setup.dependents
        self._replaced = setup.replaced
        for t in self.targets + self.dependents:
            shared = None
            for a in t.aliases:  # tied tensors: one Mask shared by every alias
                shared = attach_mask(a.module, a.attr, shared)
            self._masks[t.name] = shared  # type: ignore[assignment]
            reader = setup.readers.get(t.name.rpartition(".")[0])
            if reader is not None:
                shared.reader = reader  # type: ignore[union-attr]
        self._init_statistics()
        self._attached = True
        if optimizer is not None:
            self.add_optimizer(optimizer)
        return self

    def _init_statistics(self) -> None:
        """Create every statistic up front, add input hooks, capture Narang's q values."""
        for t in self.targets:
            w = t.to_out_in(t.param.detach())
            self._stats[t.name] = self.criterion.init_stats(w, _n_inputs(t))
            if self.criterion.needs_inputs and _n_inputs(t) is not None:
                for a in t.aliases:
                    hook = _input_hook(self, t.name, a.module)
                    self._handles.append(a.module.register_forward_pre_hook(hook))
        if self.config.schedule.kind == "threshold":
            self._q = target_q(self.targets, self.config.schedule)  # type: ignore[arg-type]

    def add_optimizer(self, optimizer: torch.optim.Optimizer) -> Pruner:
        """Track `optimizer`: swap factorized parameters, zero its state on updates, add hooks.

        Only the first optimizer gets the step hooks (one gradient accumulation and one
        `step()` per optimizer step); later ones only have their state zeroed.
        """
        self._require_attached()
        _swap_params(optimizer, self._replaced)
        if not self._optimizers:
            if self.criterion.needs_grad:
                self._handles.append(optimizer.register_step_pre_hook(self._pre_step))
            self._handles.append(optimizer.register_step_post_hook(self._post_step))
            self._hooked = True
        self._optimizers.append(optimizer)
        return self

    def after_step(self, trainer: Any, step: int) -> None:
        """Trainer callback (`prunekit.train.Trainer`): `step` optimizer steps are done (1, 2, ...).

        Adopts `trainer.optimizer` (its state is zeroed for pruned weights, no hooks), folds the
        gradients still held in `.grad` (clipped, DDP-averaged) into the statistics, and calls
        `self.step(step - 1)`. It does nothing when an optimizer was passed to `attach()` or
        `add_optimizer()`: its hooks already did all of this.
        """
        self._require_attached()
        if self._hooked:
            return
        opt = getattr(trainer, "optimizer", None)
        if isinstance(opt, torch.optim.Optimizer) and all(opt is not o for o in self._optimizers):
            _swap_params(opt, self._replaced)
            self._optimizers.append(opt)
        if step - 1 <= self.config.schedule.last_step:
            self._accumulate(strict=False)
        self.step(step - 1)

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._next_step <= self.config.schedule.last_step:
            self._accumulate(strict=False)

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.step(self._next_step)

    def _require_attached(self) -> None:
        if not self._attached:
            raise PrunekitError("the Pruner has no masks yet: call pruner.attach() first")

    # ---------------------------------------------------------------- statistics

    def accumulate(self) -> None:
        """Fold the current gradients into the criterion's statistics (call after backward).

        Raises:
            PrunekitError: not attached, or no tensor in scope has a gradient.
        """
        self._require_attached()
        self._accumulate(strict=True)

    def _accumulate(self, strict: bool) -> None:
        if not self.criterion.needs_grad:
            return
        seen = False
        for t in self.targets:
            p = t.param
            if p.grad is None:
                continue
            seen = True
            g = t.to_out_in(p.grad.detach())
            self.criterion.accumulate_grad(t.to_out_in(p.detach()), g, self._stats[t.name])
        if strict and not seen:
            raise PrunekitError(
                "pruner.accumulate() found no gradients: call it after loss.backward() and "
                "before optimizer.zero_grad()"
            )

    @contextlib.contextmanager
    def calibration(self) -> Iterator[Pruner]:
        """Within this block, Linear inputs are accumulated even in eval mode (activation)."""
        self._calibrating = True
        try:
            yield self
        finally:
            self._calibrating = False

    def _stat_tensors(self) -> list[Tensor]:
        return [s[k] for t in self.targets for s in [self._stats[t.name]] for k in sorted(s)]

    # ---------------------------------------------------------------- pruning

    def step(self, step: int) -> bool:
        """Update masks if the schedule says so at `step` (0-based optimizer step just taken).

        Returns:
            Whether masks were updated.
        """
        self._require_attached()
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise PrunekitError(f"step={step!r} must be an integer >= 0 (0 after the first step)")
        self._next_step = step + 1
        schedule = self.config.schedule
        updated = schedule.should_update(step)
        if updated and schedule.kind == "threshold":
            eps = {n: schedule.threshold(step, q) for n, q in self._q.items()}  # type: ignore[union-attr]
            self._update(thresholds=eps)
        elif updated:
            self._update(sparsity=schedule(step))
        if schedule.opens_after(step):
            self._open_masks()
        return updated

    @torch.no_grad()
    def _open_masks(self) -> None:
        """Reset every mask to all-ones (IHT): pruned weights are still zero, so the forward pass
        is unchanged, but the next gradient step is dense and the next update ranks every weight."""
        for m in self._masks.values():
            m.mask.fill_(True)

    def prune_now(self, sparsity: float) -> None:
        """Prune to `sparsity` at once with the configured method and budget (masks only grow).

        Raises:
            PrunekitError: sparsity outside [0, 1), or a data-driven criterion without data.
        """
        self._require_attached()
        _check_fraction("sparsity", sparsity)
        self._update(sparsity=float(sparsity))

    def _score(self, t: Target) -> Tensor:
        w = t.to_out_in(t.param.detach())
        s = t.from_out_in(self.criterion.score(w, self._stats[t.name]))
        if t.group_vocab:
            s = s.mean(dim=0, keepdim=True).expand_as(s)  # one score per column
        return s

    @torch.no_grad()
    def _update(self, sparsity: float | None = None, thresholds: dict | None = None) -> None:
        all_reduce_mean_(self._stat_tensors())
        if not all(self.criterion.has_data(self._stats[t.name]) for t in self.targets):
            raise PrunekitError(self.criterion.missing_data)
        scores = {t.name: self._score(t) for t in self.targets}
        keep = {name: m.mask for name, m in self._masks.items()}
        units = self.method.units(self.targets, scores, keep)
        if thresholds is not None:
            removed = select_threshold(units, thresholds)
        elif self.config.budget == "global":
            removed = select_global(units, sparsity)  # type: ignore[arg-type]
        else:
            removed = select_layer(units, sparsity)  # type: ignore[arg-type]
        new_keep = {name: k.clone() for name, k in keep.items()}
        for unit, r in zip(units, removed, strict=True):
            unit.write(r, new_keep)
        for t in self.targets + self.dependents:
            update_mask_(self._masks[t.name], new_keep[t.name], t.param, self._optimizers)
        for s in self._stat_tensors():
            s.zero_()
        self._n_updates += 1
        log.info("pruning update %d: scope sparsity %.4f", self._n_updates, self.sparsity())

    # ---------------------------------------------------------------- reporting

    def _kept_and_dense(self, t: Target) -> tuple[int, int]:
        kept = int(self._masks[t.name].mask.sum())
        if t.kind == "factor":
            a, b = t.dense_shape  # type: ignore[misc]
            return kept * (a + b + 1), a * b
        return kept, t.param.numel()

    def sparsity(self) -> float:
        """Fraction of the scope's dense parameters removed.

        Factorized layers count k (a + b + 1) kept parameters against a b dense ones, so the value
        is negative while the factorization is larger than the dense matrix.
        """
        self._require_attached()
        kept, dense = map(sum, zip(*(self._kept_and_dense(t) for t in self.targets), strict=True))
        return 1.0 - kept / dense

    def report(self) -> list[dict[str, Any]]:
        """Return one JSON-able row per scope tensor: name, kind, kept, dense, sparsity."""
        rows = []
        for t in self.targets:
            kept, dense = self._kept_and_dense(t)
            rows.append(
                {
                    "name": t.name,
                    "kind": t.kind,
                    "kept": kept,
                    "dense": dense,
                    "sparsity": 1.0 - kept / dense,
                }
            )
        return rows

    def param_count_after(self) -> int:
        """Effective parameter count of the whole model (see `prunekit.prune.size.count_params`)."""
        return count_params(self.model)

    def sparsity_for_size(self, target_params: int) -> float:
        """Return the scope sparsity reaching `target_params` with this config (call before attach).

        Raises:
            PrunekitError: see `prunekit.prune.size.sparsity_for_size`.
        """
        c = self.config
        return sparsity_for_size(
            self.model,
            target_params,
            c.scope,
            method=c.method,
            method_args=c.method_args,
            budget=c.budget,
        )

    @property
    def groups(self) -> list[GroupSpec]:
        """The structured group families (empty for other methods), for export."""
        return self.method.groups

    def masks(self) -> dict[str, Tensor]:
        """Return the current keep-masks by canonical tensor name (views, do not modify)."""
        return {name: m.mask for name, m in self._masks.items()}

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Return the pruner's own state: {"meta": JSON-able dict, "tensors": flat name -> Tensor}.

        Masks are not here: they are buffers of the model's state_dict. Save e.g. with
        `safetensors.torch.save_file(sd["tensors"], path, metadata={"pruner": json.dumps(sd["meta"])})`.
        """
        self._require_attached()
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "next_step": self._next_step,
            "n_updates": self._n_updates,
            "targets": [t.name for t in self.targets],
        }
        tensors = {
            f"stats/{name}/{k}": v.detach().clone()
            for name, s in self._stats.items()
            for k, v in s.items()
        }
        tensors.update({f"q/{n}": torch.tensor(q, dtype=torch.float64) for n, q in self._q.items()})
        return {"meta": meta, "tensors": tensors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned (after `attach()`, with the same config).

        Raises:
            PrunekitError: another format, another config or scope, or missing tensors.
        """
        self._require_attached()
        meta, tensors = state.get("meta", {}), state.get("tensors", {})
        if meta.get("format") != STATE_FORMAT or meta.get("version") != STATE_VERSION:
            raise PrunekitError(
                f"not a prunekit pruner state (format={meta.get('format')!r}, "
                f"version={meta.get('version')!r}): pass what Pruner.state_dict() returned"
            )
        if PruneConfig.from_dict(meta["config"]) != self.config:
            raise PrunekitError(
                "the pruner state was saved with another PruneConfig: build the Pruner with "
                "the checkpoint's config (PruneConfig.from_dict(state['meta']['config']))"
            )
        if meta["targets"] != [t.name for t in self.targets]:
            raise PrunekitError(
                "the pruner state covers other tensors than this model's scope: load it into "
                "the same architecture"
            )
        for name, s in self._stats.items():
            for k, v in s.items():
                key = f"stats/{name}/{k}"
                if key not in tensors or tensors[key].shape != v.shape:
                    raise PrunekitError(f"pruner state lacks {key!r} of shape {tuple(v.shape)}")
                v.copy_(tensors[key])
        for name in self._q:
            self._q[name] = float(tensors[f"q/{name}"])
        self._next_step, self._n_updates = int(meta["next_step"]), int(meta["n_updates"])

    @property
    def next_step(self) -> int:
        """The step index the optimizer post-hook passes to `step()` next."""
        return self._next_step

    # ---------------------------------------------------------------- teardown

    def remove_hooks(self) -> None:
        """Remove the optimizer and input hooks (masks stay)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def finalize(self) -> nn.Module:
        """Remove hooks, bake the masks into the weights and return the plain model."""
        self.remove_hooks()
        self._attached = False
        return finalize(self.model)
