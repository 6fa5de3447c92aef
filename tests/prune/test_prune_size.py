"""Target sizes: sparsity_for_size lands at (or just under) the requested parameter count."""

import pytest
import torch
from prune_standins import TinyRNNLM, TinyTransformerLM

from prunekit.errors import PrunekitError
from prunekit.prune import (
    OneShot,
    PruneConfig,
    Pruner,
    ScopeConfig,
    count_params,
    sparsity_for_size,
)


def _model():
    torch.manual_seed(0)
    return TinyTransformerLM(vocab=30, d=16, n_head=4, d_head=4, d_ff=32)


@pytest.mark.parametrize(
    ("method", "budget", "slack"),
    [
        ("unstructured", "layer", 8),
        ("unstructured", "global", 0),
        ("structured", "layer", 200),
        ("factorized", "layer", 200),
        ("factorized", "global", 100),
    ],
)
def test_pruning_to_a_size(method, budget, slack):
    model = _model()
    dense = count_params(model)
    target = dense // 2
    s = sparsity_for_size(model, target, method=method, budget=budget)
    assert 0 < s < 1
    cfg = PruneConfig(method=method, schedule=OneShot(sparsity=s), budget=budget)
    pruner = Pruner(model, cfg).attach()
    pruner.prune_now(s)
    after = pruner.param_count_after()
    assert target - slack <= after <= target + (slack if budget == "global" else 0)


def _after(s: float, **kw) -> int:
    pruner = Pruner(_model(), PruneConfig(schedule=OneShot(sparsity=s), **kw)).attach()
    pruner.prune_now(s)
    return pruner.param_count_after()


@pytest.mark.parametrize("method", ["unstructured", "structured", "factorized"])
def test_returned_sparsity_is_the_smallest_on_a_1e6_grid(method):
    target = count_params(_model()) * 2 // 5
    s = sparsity_for_size(_model(), target, method=method)
    assert round(s, 6) == s
    assert _after(s, method=method) <= target < _after(s - 1e-6, method=method)


def test_already_small_enough():
    model = _model()
    assert sparsity_for_size(model, count_params(model)) == 0.0


def test_unreachable_targets_name_the_minimum():
    model = TinyRNNLM(layers=1)
    rest = sum(p.numel() for n, p in model.named_parameters() if "bias" in n)
    with pytest.raises(PrunekitError) as exc:
        sparsity_for_size(model, rest - 1)
    assert str(exc.value) == (
        f"target_params={rest - 1} is unreachable: the smallest model this scope and method "
        f"reach has {rest} parameters (the parameters outside the pruning scope: biases, norms, "
        f"excluded layers); ask for >= {rest} or widen the scope"
    )
    lin = _model()
    scope = ScopeConfig(include=["blocks.*"])
    with pytest.raises(PrunekitError, match="factorized layers keep rank >= 1"):
        sparsity_for_size(lin, 1000, scope, method="factorized")


def test_bad_target():
    with pytest.raises(PrunekitError) as exc:
        sparsity_for_size(_model(), 0)
    assert str(exc.value) == "target_params=0 must be a positive integer number of parameters"
