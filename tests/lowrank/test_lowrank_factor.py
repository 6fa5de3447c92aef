"""W = U V parametrizations: exact at full rank, truncated SVD below, RNN gates stacked per kind."""

import copy
import math

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.lowrank import (
    LowRank,
    factored,
    factorize,
    factors,
    full_rank_plan,
    nu,
    plan_from_state_dict,
    rank_for_variance,
    ranks_of,
    select_matrices,
    unfactor,
    variance_plan,
)
from prunekit.models import build_model
from prunekit.prune import OneShot, PruneConfig, prune_
from prunekit.prune.scope import ScopeConfig
from rnn_standins import Stack


@pytest.mark.parametrize(
    ("cell", "bidirectional"), [("gru", False), ("lstm", False), ("gru", True)]
)
def test_full_rank_factoring_keeps_the_function_and_trains(cell, bidirectional):
    torch.manual_seed(0)
    model = Stack(cell, bidirectional=bidirectional)
    x = torch.randn(3, 5, 6)
    before = model(x)
    mats = select_matrices(model)
    factorize(model, full_rank_plan(mats))
    assert torch.allclose(model(x), before, atol=1e-5)
    names = {m.name for m in factored(model)}
    suffix = ["", "_reverse"] if bidirectional else [""]
    expect = {"input.weight", "head.weight"}
    expect |= {f"rnn.weight_{k}_l{i}{s}" for k in ("ih", "hh") for i in (0, 1) for s in suffix}
    assert names == expect
    U, V = factors(model.rnn, "weight_hh_l1")
    gates = 4 if cell == "lstm" else 3
    assert U.shape == (gates * 10, 10) and V.shape == (10, 10)  # one stacked matrix per kind
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).pow(2).mean().backward()
    assert U.grad is not None and V.grad is not None
    opt.step()
    assert not torch.allclose(model(x), before, atol=1e-4)
    twin = copy.deepcopy(model)  # parametrized RNNs survive deepcopy
    assert torch.allclose(twin(x), model(x))


def test_truncation_is_the_balanced_truncated_svd():
    torch.manual_seed(0)
    lin = nn.Linear(9, 7)
    w = lin.weight.detach().clone()
    factorize(lin, {"weight": 3})
    U, V = factors(lin, "weight")
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    best = (u[:, :3] * s[:3]) @ vh[:3]
    assert torch.allclose(lin.weight.double(), best, atol=1e-5)
    # balanced: U^T U = V V^T = diag(s_r)
    assert torch.allclose((U.T @ U).double(), torch.diag(s[:3]), atol=1e-5)
    assert torch.allclose((V @ V.T).double(), torch.diag(s[:3]), atol=1e-5)
    assert ranks_of(lin) == {"weight": 3}


def test_refactoring_a_factored_matrix_truncates_its_product():
    torch.manual_seed(0)
    model = Stack("lstm")
    factorize(model, full_rank_plan(select_matrices(model)))
    w = model.rnn.weight_ih_l0.detach().clone()
    factorize(model, {"rnn.weight_ih_l0": 2})
    assert factors(model.rnn, "weight_ih_l0")[0].shape == (40, 2)
    assert torch.linalg.matrix_rank(model.rnn.weight_ih_l0.detach()) == 2
    s = torch.linalg.svdvals(w.double())
    err = float(torch.linalg.matrix_norm(model.rnn.weight_ih_l0.detach().double() - w.double()))
    assert err == pytest.approx(float(s[2:].pow(2).sum().sqrt()), rel=1e-4)  # Eckart-Young


def test_state_dict_round_trip_through_the_plan():
    torch.manual_seed(0)
    model = Stack("gru")
    plan = {"rnn.weight_hh_l0": 4, "head.weight": 2}
    factorize(model, plan)
    sd = model.state_dict()
    assert plan_from_state_dict(sd) == plan
    fresh = Stack("gru")
    factorize(fresh, plan_from_state_dict(sd))
    fresh.load_state_dict(sd)
    x = torch.randn(2, 3, 6)
    assert torch.equal(fresh(x), model(x))


def test_unfactor_leaves_plain_parameters_holding_the_product():
    torch.manual_seed(0)
    model = Stack("gru")
    factorize(model, {"rnn.weight_hh_l0": 3, "input.weight": 2})
    x = torch.randn(2, 3, 6)
    y = model(x)
    unfactor(model)
    assert factored(model) == []
    assert isinstance(model.rnn.weight_hh_l0, nn.Parameter)
    assert torch.allclose(model(x), y, atol=1e-6)


def test_select_matrices_marks_recurrent_ones_and_skips_tied_and_embeddings():
    model = build_model(
        {"arch": "rnn", "cell": "lstm", "vocab_size": 30, "d_embed": 8, "d_hidden": 8,
         "n_layer": 2, "tie_embeddings": True}
    )  # fmt: skip
    mats = {m.name: m.recurrent for m in select_matrices(model)}
    assert mats == {
        "rnn.weight_ih_l0": False, "rnn.weight_hh_l0": True,
        "rnn.weight_ih_l1": False, "rnn.weight_hh_l1": True,
    }  # fmt: skip
    scoped = select_matrices(model, ScopeConfig(module_types=("LSTM",), exclude=("*hh*",)))
    assert [m.name for m in scoped] == ["rnn.weight_ih_l0", "rnn.weight_ih_l1"]


def test_variance_rank_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0])  # energies 9, 4, 1 of 14
    assert [rank_for_variance(s, f) for f in (0.6, 0.9, 0.95, 1.0)] == [1, 2, 3, 3]
    assert rank_for_variance(s, 9 / 14) == 1  # exactly reached counts
    assert rank_for_variance(torch.zeros(4), 0.9) == 1


def test_variance_plan_keeps_matrices_dense_when_factors_are_not_smaller():
    torch.manual_seed(0)
    model = Stack("gru")
    with torch.no_grad():  # rank-1 recurrent matrix: rank 1 at any threshold
        model.rnn.weight_hh_l0.copy_(torch.randn(30, 1) @ torch.randn(1, 10))
    plan = variance_plan(select_matrices(model), 0.9)
    assert plan["rnn.weight_hh_l0"] == 1
    for name, r in plan.items():
        mat = next(m for m in select_matrices(model) if m.name == name)
        assert r * sum(mat.shape) < math.prod(mat.shape)
    assert len(plan) < len(select_matrices(model))  # random full-rank ones stay dense at 0.9


def test_nu_by_hand():
    assert nu(torch.diag(torch.tensor([4.0, 3.0]))) == pytest.approx((7 / 5 - 1) / (2**0.5 - 1))
    assert nu(torch.randn(6, 1) @ torch.randn(1, 5)) == pytest.approx(0.0, abs=1e-6)
    assert nu(torch.eye(5)) == pytest.approx(1.0)
    assert nu(torch.zeros(3, 3)) == 0.0


def test_errors_name_the_problem_and_the_fix():
    model = Stack("gru")
    with pytest.raises(PrunekitError) as exc:
        factorize(model, {"rnn.weight_hh_l0": 11})
    assert str(exc.value) == (
        "rank 11 of rnn.weight_hh_l0 must be an integer in [1, 10] for its (30, 10) matrix: "
        "fix the plan"
    )
    with pytest.raises(PrunekitError) as exc:
        factorize(model, {"rnn.weight_xx": 2})
    assert str(exc.value) == (
        "the low-rank plan names 'rnn.weight_xx', which this model does not have: build the "
        "model with the architecture the plan was made for"
    )
    with pytest.raises(PrunekitError, match="^empty pruning scope: no weight of module_types"):
        select_matrices(nn.Sequential(nn.Embedding(5, 3)))
    tied = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5))
    tied[1].weight = tied[0].weight
    with pytest.raises(PrunekitError) as exc:
        select_matrices(tied)
    assert str(exc.value) == (
        "no Linear / LSTM / GRU / RNN matrix in the low-rank scope ('Linear', 'LSTM', 'GRU', "
        "'RNN'): widen lowrank.scope (tied output layers and embeddings are never factored)"
    )
    masked = Stack("gru")
    prune_(masked, PruneConfig(schedule=OneShot(sparsity=0.5)))
    with pytest.raises(PrunekitError) as exc:
        factorize(masked, {"head.weight": 2})
    assert str(exc.value) == (
        "head.weight has a pruning mask: finalize the pruning (prunekit.prune.finalize) "
        "before factoring it"
    )
    with pytest.raises(PrunekitError, match="is not factored"):
        factors(model.head, "weight")


def test_lowrank_parametrization_repr():
    assert repr(LowRank(3)) == "LowRank(rank=3)"
