"""Structured pruning: coupled groups, gate-consistent RNN units, masking == physical removal."""

import json

import pytest
import torch
from prune_standins import TinyRNNLM, TinyTransformerLM, shrink
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune import OneShot, PruneConfig, Pruner, ScopeConfig


def _structured(s=0.5, budget="layer", **args):
    scope = ScopeConfig(exclude=["embed", "lm_head"])
    return PruneConfig(
        method="structured",
        method_args=args,
        schedule=OneShot(sparsity=s),
        scope=scope,
        budget=budget,
    )


def test_transformer_heads_and_ffn_units_equal_physical_removal():
    torch.manual_seed(0)
    model = TinyTransformerLM(d=8, n_head=4, d_head=2, d_ff=12)
    pruner = Pruner(model, _structured(0.5)).attach()
    pruner.prune_now(0.5)
    kinds = sorted(spec.kind for spec in pruner.groups)
    assert kinds == ["ffn_units", "ffn_units", "heads", "heads"]
    masks = pruner.masks()
    for b in range(2):
        q = masks[f"blocks.{b}.attn.q_proj.weight"]
        o = masks[f"blocks.{b}.attn.out_proj.weight"]
        dead_heads = [h for h in range(4) if not q[2 * h : 2 * h + 2].any()]
        assert len(dead_heads) == 2
        for h in range(4):
            for p in ("q_proj", "k_proj", "v_proj"):
                rows = masks[f"blocks.{b}.attn.{p}.weight"][2 * h : 2 * h + 2]
                assert bool(rows.any()) == (h not in dead_heads)
            assert bool(o[:, 2 * h : 2 * h + 2].any()) == (h not in dead_heads)
        assert int((~masks[f"blocks.{b}.ffn.fc_in.weight"].any(dim=1)).sum()) == 6
    small = shrink(model, pruner)
    assert (
        small.blocks[0].attn.q_proj.out_features == 4
        and small.blocks[0].ffn.fc_in.out_features == 6
    )
    x = torch.randint(0, 13, (2, 7))
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)


@pytest.mark.parametrize(("cell", "gates"), [("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("bi", [False, True])
def test_rnn_units_prune_all_gates_and_equal_physical_removal(cell, gates, bi):
    torch.manual_seed(0)
    H = 6
    model = TinyRNNLM(cell=cell, hidden=H, layers=2, bi=bi)
    pruner = Pruner(model, _structured(0.5)).attach()
    assert [t.name for t in pruner.dependents] == ["lm_head.weight"]  # out of scope, still masked
    pruner.prune_now(0.5)
    masks = pruner.masks()
    sfx = ["", "_reverse"] if bi else [""]
    for layer in range(2):
        for d, s in enumerate(sfx):
            ih, hh = masks[f"rnn.weight_ih_l{layer}{s}"], masks[f"rnn.weight_hh_l{layer}{s}"]
            consumer = masks[f"rnn.weight_ih_l1{s}"] if layer == 0 else masks["lm_head.weight"]
            dead = [j for j in range(H) if not ih[j].any()]
            assert len(dead) == 3
            for j in range(H):
                alive = j not in dead
                for g in range(gates):  # every gate row of the unit goes together
                    assert bool(ih[g * H + j].any()) == alive and bool(hh[g * H + j].any()) == alive
                assert bool(hh[:, j].any()) == alive
                assert bool(consumer[:, d * H + j].any()) == alive
    small = shrink(model, pruner)
    assert small.rnn.hidden_size == 3
    x = torch.randint(0, 11, (2, 5))
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)


def test_rnn_consumer_through_proj():
    torch.manual_seed(0)
    model = TinyRNNLM(cell="lstm", hidden=4, layers=1, proj=True)
    pruner = Pruner(model, _structured(0.5)).attach()
    last = next(s for s in pruner.groups if s.kind == "rnn_units")
    assert last.members[-1].param == "proj.weight" and last.members[-1].dim == 1


# rows with distinct mean / min / max: mean removes B, min removes C, max removes A
ROWS = [[1.5] * 4, [0.3, 0.3, 0.3, 4.0], [0.1, 3.0, 3.0, 3.0], [5.0] * 4]


@pytest.mark.parametrize(("reduce", "dead"), [("mean", 1), ("min", 2), ("max", 0)])
@pytest.mark.parametrize("granularity", ["rows", "cols"])
def test_reduce_and_granularity(reduce, dead, granularity):
    model = nn.Sequential(nn.Linear(4, 4))
    w = torch.tensor(ROWS)
    with torch.no_grad():
        model[0].weight.copy_(w if granularity == "rows" else w.T)
    args = {"reduce": reduce, "granularity": granularity}
    cfg = PruneConfig(method="structured", method_args=args, schedule=OneShot(sparsity=0.25))
    pruner = Pruner(model, cfg).attach()
    pruner.prune_now(0.25)
    zero = model[0].weight == 0
    lines = zero.all(dim=1) if granularity == "rows" else zero.all(dim=0)
    assert lines.nonzero().flatten().tolist() == [dead]
    assert int(zero.sum()) == 4


def test_auto_other_linears_prune_rows_and_embedding_columns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 4))
    cfg = PruneConfig(method="structured", schedule=OneShot(sparsity=0.5))
    pruner = Pruner(model, cfg).attach()
    pruner.prune_now(0.5)
    assert sorted(s.kind for s in pruner.groups) == ["embedding_cols", "rows"]
    assert int((model[0].weight == 0).all(dim=0).sum()) == 3
    assert int((model[1].weight == 0).all(dim=1).sum()) == 2


def test_global_structured_budget_reaches_target():
    torch.manual_seed(0)
    model = TinyTransformerLM(d=8, n_head=4, d_head=2, d_ff=12)
    pruner = Pruner(model, _structured(0.4, budget="global")).attach()
    pruner.prune_now(0.4)
    assert 0.4 <= pruner.sparsity() < 0.4 + 0.1


def test_group_spec_to_dict_is_json():
    model = TinyRNNLM(hidden=3, layers=1)
    pruner = Pruner(model, _structured()).attach()
    d = [s.to_dict() for s in pruner.groups]
    assert json.loads(json.dumps(d)) == d
    assert d[0]["members"][0] == {
        "param": "rnn.weight_ih_l0",
        "dim": 0,
        "indices": [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]],
    }


def test_rnn_without_consumer_needs_one():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4, batch_first=True)

    cfg = PruneConfig(method="structured", schedule=OneShot(sparsity=0.5))
    with pytest.raises(PrunekitError) as exc:
        Pruner(Bare(), cfg).attach()
    assert str(exc.value) == (
        "structured pruning of 'rnn' needs the Linear that reads its last layer's output (its "
        "input columns are masked with each unit): pass method_args={'consumers': {'rnn': "
        "'<linear module name>'}}"
    )
    cfg = PruneConfig(
        method="structured",
        method_args={"consumers": {"rnn": "rnn"}},
        schedule=OneShot(sparsity=0.5),
    )
    with pytest.raises(PrunekitError) as exc:
        Pruner(Bare(), cfg).attach()
    assert str(exc.value) == (
        "method_args consumers['rnn']='rnn' must name an nn.Linear with in_features=4 that "
        "reads the RNN output"
    )


def test_lstm_with_proj_size_is_refused():
    model = nn.Module()
    model.rnn = nn.LSTM(3, 4, proj_size=2)
    cfg = PruneConfig(method="structured", schedule=OneShot(sparsity=0.5))
    with pytest.raises(PrunekitError) as exc:
        Pruner(model, cfg).attach()
    assert str(exc.value) == (
        "structured pruning of 'rnn' (an LSTM with proj_size) is not supported: "
        "use method=unstructured or method_args={'granularity': 'rows'}"
    )
