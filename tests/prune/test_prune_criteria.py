"""Criteria: magnitude, Taylor (against the true loss change), activation (Wanda), registry."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune import (
    Criterion,
    OneShot,
    PruneConfig,
    Pruner,
    ScopeConfig,
    criterion_names,
    make_criterion,
    prune_,
    register_criterion,
)
from prunekit.prune.criteria import _CRITERIA


def _toy(scale: float) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        model[0].weight.mul_(scale / model[0].weight.abs().mean())
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    return model, x, y


def test_taylor_score_approximates_true_loss_change():
    model, x, y = _toy(scale=1e-3)
    w = model[0].weight
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    crit = make_criterion("taylor")
    stats = crit.init_stats(w.detach(), None)
    crit.accumulate_grad(w.detach(), w.grad, stats)
    approx = crit.score(w.detach(), stats)
    exact = torch.empty_like(approx)
    with torch.no_grad():
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                saved = w[i, j].item()
                w[i, j] = 0.0
                exact[i, j] = (loss.detach() - F.cross_entropy(model(x), y)) ** 2
                w[i, j] = saved
    big = exact > 1e-3 * exact.max()
    rel = ((approx - exact).abs() / exact)[big]
    assert big.sum() >= 15
    assert rel.max() < 0.05, rel.max()
    # the ranking the pruner would use agrees on the lowest half
    k = w.numel() // 2
    assert set(approx.flatten().argsort()[:k].tolist()) == set(
        exact.flatten().argsort()[:k].tolist()
    )


def test_taylor_averages_over_accumulated_gradients():
    crit = make_criterion("taylor")
    w = torch.tensor([[1.0, -2.0]])
    stats = crit.init_stats(w, None)
    crit.accumulate_grad(w, torch.tensor([[1.0, 1.0]]), stats)
    crit.accumulate_grad(w, torch.tensor([[3.0, 0.0]]), stats)
    assert torch.equal(crit.score(w, stats), torch.tensor([[5.0, 2.0]]))  # ((1+9)/2, (4+0)/2)


def test_pruner_taylor_removes_lowest_g_times_w_squared():
    model, x, y = _toy(scale=1.0)
    scope = ScopeConfig(include=["0"])
    cfg = PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.25), scope=scope)
    pruner = Pruner(model, cfg).attach()
    F.cross_entropy(model(x), y).backward()
    pruner.accumulate()
    w = model[0].parametrizations.weight.original
    expected = (w.grad * w).detach().square().flatten().argsort(stable=True)[:5]
    pruner.prune_now(0.25)
    removed = (~pruner.masks()["0.weight"]).flatten().nonzero().flatten()
    assert sorted(removed.tolist()) == sorted(expected.tolist())


def test_magnitude_is_abs():
    w = torch.tensor([[-3.0, 0.5]])
    assert torch.equal(make_criterion("magnitude").score(w, {}), torch.tensor([[3.0, 0.5]]))


def test_activation_is_wanda_score():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3, bias=False))
    xs = [torch.randn(2, 5, 4) * torch.tensor([10.0, 0.1, 1.0, 3.0]) for _ in range(3)]
    cfg = PruneConfig(criterion="activation", schedule=OneShot(sparsity=0.5))
    w = model[0].weight.detach().clone()
    prune_(model, cfg, calibration=[(x, None) for x in xs])
    norms = torch.cat([x.reshape(-1, 4) for x in xs]).norm(dim=0)  # ||x_j||_2 over all tokens
    score = w.abs() * norms
    expected_removed = score.flatten().argsort(stable=True)[:6]
    removed = (model[0].weight == 0).flatten().nonzero().flatten()
    assert sorted(removed.tolist()) == sorted(expected_removed.tolist())


def test_activation_falls_back_to_magnitude_without_inputs():
    crit = make_criterion("activation")
    w = torch.tensor([[1.0, -4.0]])
    assert crit.init_stats(w, None) == {}
    assert torch.equal(crit.score(w, {}), w.abs())


def test_activation_ignores_eval_passes_outside_calibration():
    model = nn.Sequential(nn.Linear(4, 3))
    cfg = PruneConfig(criterion="activation", schedule=OneShot(sparsity=0.5))
    pruner = Pruner(model, cfg).attach()
    model.eval()
    model(torch.randn(2, 4))
    assert float(pruner._stats["0.weight"]["act_tokens"]) == 0
    with pruner.calibration():
        model(torch.randn(2, 4))
    model.train()
    model(torch.randn(3, 4))
    assert float(pruner._stats["0.weight"]["act_tokens"]) == 5


def test_register_custom_criterion():
    @register_criterion("neg_magnitude_test")
    class Neg(Criterion):
        def score(self, weight, stats):
            return -weight.abs()

    try:
        assert "neg_magnitude_test" in criterion_names()
        model = nn.Sequential(nn.Linear(2, 2, bias=False))
        with torch.no_grad():
            model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        prune_(model, PruneConfig(criterion="neg_magnitude_test", schedule=OneShot(sparsity=0.5)))
        assert model[0].weight.tolist() == [[1.0, 2.0], [0.0, 0.0]]
    finally:
        _CRITERIA.pop("neg_magnitude_test")


def test_unknown_criterion():
    with pytest.raises(PrunekitError) as exc:
        make_criterion("l1")
    assert str(exc.value) == (
        "criterion='l1' is unknown: choose one of 'activation', 'magnitude', 'taylor' "
        "(or add one with @register_criterion)"
    )
