"""Pruning framework: criterion x method x schedule over a scope (seed 004 §3).

- one call: `prune_(model, PruneConfig(schedule=OneShot(sparsity=0.5)))`;
- in a training loop: `Pruner(model, config).attach(optimizer)`;
- sizes: `sparsity_for_size(model, target_params)`, `count_params(model)`;
- a plain model with zeros: `finalize(model)`.
"""

from prunekit.prune.api import calibrate, cross_entropy_loss, prune_
from prunekit.prune.budget import Unit
from prunekit.prune.config import PruneConfig
from prunekit.prune.criteria import (
    Criterion,
    criterion_names,
    make_criterion,
    register_criterion,
)
from prunekit.prune.factorized import FactorizedEmbedding, FactorizedLinear
from prunekit.prune.groups import GroupMember, GroupSpec, find_groups
from prunekit.prune.masks import Mask, attach_mask, finalize, get_mask
from prunekit.prune.methods import Method, make_method, method_names, register_method
from prunekit.prune.pruner import Pruner
from prunekit.prune.reattach import attach_masks_from_state_dict
from prunekit.prune.schedules import (
    IHT,
    Cubic,
    NarangRamp,
    OneShot,
    factorized_rank_fraction,
    schedule_from_dict,
)
from prunekit.prune.scope import ScopeConfig, Target, resolve_scope
from prunekit.prune.size import count_params, sparsity_for_size

__all__ = [
    "Criterion",
    "Cubic",
    "FactorizedEmbedding",
    "FactorizedLinear",
    "GroupMember",
    "GroupSpec",
    "IHT",
    "Mask",
    "Method",
    "NarangRamp",
    "OneShot",
    "PruneConfig",
    "Pruner",
    "ScopeConfig",
    "Target",
    "Unit",
    "attach_mask",
    "attach_masks_from_state_dict",
    "calibrate",
    "count_params",
    "criterion_names",
    "cross_entropy_loss",
    "factorized_rank_fraction",
    "finalize",
    "find_groups",
    "get_mask",
    "make_criterion",
    "make_method",
    "method_names",
    "prune_",
    "register_criterion",
    "register_method",
    "resolve_scope",
    "schedule_from_dict",
    "sparsity_for_size",
]
