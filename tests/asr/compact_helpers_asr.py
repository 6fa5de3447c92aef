"""A masked (pruned, parametrized) and a compact (exported) copy of a TransformerLM."""

import copy

from torch import nn

from prunekit.export.compact import compact
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_


def masked_transformer(model: nn.Module) -> nn.Module:
    config = PruneConfig(method="unstructured", schedule=OneShot(sparsity=0.5),
                         scope=ScopeConfig(module_types=("Linear",)))  # fmt: skip
    return prune_(copy.deepcopy(model), config).eval()


def compact_transformer(model: nn.Module, int8: bool = False) -> nn.Module:
    config = PruneConfig(method="structured", schedule=OneShot(sparsity=0.5))
    return compact(prune_(copy.deepcopy(model), config).eval(), repeats=2, int8=int8)[0].eval()


def compact_rnn(model: nn.Module, int8: bool = False) -> nn.Module:
    """Unstructured-pruned LSTM/GRU LM exported with CSR gate matrices (and int8 if asked)."""
    config = PruneConfig(method="unstructured", schedule=OneShot(sparsity=0.8),
                         scope=ScopeConfig(module_types=("Linear", "LSTM", "GRU")))  # fmt: skip
    pruned = prune_(copy.deepcopy(model), config).eval()
    return compact(pruned, repeats=2, sparse="csr", int8=int8)[0].eval()
