"""A masked (pruned, parametrized) and a compact (exported) copy of a TransformerLM."""

import copy

from torch import nn

from prunekit.export.compact import compact
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_


def masked_transformer(model: nn.Module) -> nn.Module:
    config = PruneConfig(method="unstructured", schedule=OneShot(sparsity=0.5),
                         scope=ScopeConfig(module_types=("Linear",)))  # fmt: skip
    return prune_(copy.deepcopy(model), config).eval()


def compact_transformer(model: nn.Module) -> nn.Module:
    config = PruneConfig(method="structured", schedule=OneShot(sparsity=0.5))
    return compact(prune_(copy.deepcopy(model), config).eval(), repeats=2)[0].eval()
