"""prunekit's own TransformerLM and RNNLM: structured masks equal physical removal, all methods run."""

import pytest
import torch
from prune_standins import lm_batches, shrink

from prunekit.prune import (
    FactorizedLinear,
    OneShot,
    PruneConfig,
    Pruner,
    ScopeConfig,
    count_params,
    prune_,
    sparsity_for_size,
)

models = pytest.importorskip("prunekit.models")

STRUCTURED = PruneConfig(
    method="structured",
    schedule=OneShot(sparsity=0.5),
    scope=ScopeConfig(exclude=["embed", "lm_head"]),
)


def _transformer(**kw):
    torch.manual_seed(0)
    cfg = models.TransformerLMConfig(
        vocab_size=17, d_model=8, n_layer=2, n_head=4, d_ff=12, dropout=0.0, max_rel_pos=4, **kw
    )
    return models.TransformerLM(cfg).eval()


def _rnn(**kw):
    torch.manual_seed(0)
    cfg = models.RNNLMConfig(vocab_size=17, d_embed=6, d_hidden=8, n_layer=2, dropout=0.0, **kw)
    return models.RNNLM(cfg).eval()


def test_transformer_heads_and_ffn_removal_is_exact():
    model = _transformer()
    pruner = Pruner(model, STRUCTURED).attach()
    assert sorted(s.kind for s in pruner.groups) == ["ffn_units"] * 2 + ["heads"] * 2
    pruner.prune_now(0.5)
    small = shrink(model, pruner)
    assert small.blocks[0].attn.n_head == 2 and small.blocks[0].ffn.fc_in.out_features == 6
    x = torch.randint(0, 17, (2, 7))
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("tie", [False, True])
def test_rnn_units_removal_is_exact(cell, tie):
    model = _rnn(cell=cell, tie_embeddings=tie)
    pruner = Pruner(model, STRUCTURED).attach()
    consumer = "proj.weight" if tie else "lm_head.weight"
    assert [t.name for t in pruner.dependents] == ([] if tie else [consumer])
    pruner.prune_now(0.5)
    small = shrink(model, pruner)
    assert small.rnn.hidden_size == 4
    x = torch.randint(0, 17, (2, 5))
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)


@pytest.mark.parametrize("method", ["unstructured", "structured", "factorized"])
@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "activation"])
def test_all_methods_and_criteria_on_transformer(method, criterion):
    model = _transformer(tie_embeddings=True)
    dense = count_params(model)
    s = sparsity_for_size(model, dense // 2, method=method)
    cfg = PruneConfig(criterion=criterion, method=method, schedule=OneShot(sparsity=s))
    cal = lm_batches(17, 2)
    prune_(model, cfg, calibration=cal if criterion != "magnitude" else None)
    assert count_params(model) <= dense // 2
    if method == "factorized":
        assert isinstance(model.lm_head, FactorizedLinear)
    with torch.no_grad():
        assert torch.isfinite(model(cal[0][0])).all()
