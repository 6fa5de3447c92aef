"""Factorized layers: exact at full rank, eq. 5 ranks, tied factors, optimizer swap, FLOPs."""

import pytest
import torch
from prune_standins import TinyRNNLM, TinyTransformerLM, lm_batches, lm_loss
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune import (
    FactorizedEmbedding,
    FactorizedLinear,
    OneShot,
    PruneConfig,
    Pruner,
    ScopeConfig,
    count_params,
    factorized_rank_fraction,
    prune_,
)
from prunekit.prune.schedules import round_half_up


@pytest.mark.parametrize(("i", "o"), [(7, 5), (5, 7), (6, 6)])
def test_full_rank_reproduces_linear(i, o):
    torch.manual_seed(0)
    lin = nn.Linear(i, o)
    f = FactorizedLinear.from_linear(lin)
    assert f.rank == min(i, o) and f.bias is lin.bias
    assert torch.allclose(f.weight, lin.weight, atol=1e-5)
    x = torch.randn(3, 4, i)
    assert torch.allclose(f(x), lin(x), atol=1e-5)
    assert f.flops_per_token(1) == 2 * min(i, o) * (i + o) + min(i, o) + o


def test_full_rank_reproduces_embedding():
    torch.manual_seed(0)
    emb = nn.Embedding(9, 4, padding_idx=0)
    f = FactorizedEmbedding.from_embedding(emb)
    assert torch.allclose(f.weight, emb.weight, atol=1e-5)
    idx = torch.randint(0, 9, (2, 5))
    assert torch.allclose(f(idx), emb(idx), atol=1e-5)


def _cfg(s=0.5, **kw):
    return PruneConfig(method="factorized", schedule=OneShot(sparsity=s), **kw)


def test_factorized_model_matches_dense_then_prunes_by_eq5():
    torch.manual_seed(0)
    model = TinyTransformerLM(vocab=13, d=8, d_ff=12)
    x = torch.randint(0, 13, (2, 6))
    with torch.no_grad():
        dense_out = model(x)
    pruner = Pruner(model, _cfg()).attach()
    assert isinstance(model.embed, FactorizedEmbedding)
    assert isinstance(model.blocks[0].ffn.fc_in, FactorizedLinear)
    assert isinstance(model.blocks[0].attn.rel_k, nn.Embedding)  # positional: never touched
    with torch.no_grad():
        assert torch.allclose(model(x), dense_out, atol=1e-5)
    pruner.prune_now(0.5)
    expected_params = sum(
        p.numel() for n, p in model.named_parameters() if "bias" in n or "ln" in n
    )
    expected_params += model.blocks[0].attn.rel_k.weight.numel() * 2
    for t in pruner.targets:
        a, b = t.dense_shape
        r = min(a, b)
        k = r - round_half_up(factorized_rank_fraction(0.5, a, b) * r)
        mod = t.aliases[0].module
        assert mod.kept_rank == k, t.name
        expected_params += k * (a + b + 1)
        assert bool((mod.parametrizations.d.original == 0).sum() == r - k)
    assert count_params(model) == expected_params == pruner.param_count_after()
    # fc_in 12 x 8: s_hat = 1 - 12 * 0.5 / 20 = 0.7, removes round(5.6) = 6 of 8 ranks: k = 2
    assert model.blocks[0].ffn.fc_in.flops_per_token(5) == 2 * 2 * (8 + 12) + 2 + 12


def test_rank_never_below_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2))
    prune_(model, _cfg(0.999))
    assert [m.kept_rank for m in model] == [1, 1]


def test_tied_embedding_and_output_share_factors():
    torch.manual_seed(0)
    model = TinyTransformerLM(vocab=13, d=8, tie=True)
    x = torch.randint(0, 13, (2, 6))
    with torch.no_grad():
        dense_out = model(x)
    pruner = Pruner(model, _cfg()).attach()
    emb, head = model.embed, model.lm_head
    assert isinstance(emb, FactorizedEmbedding) and isinstance(head, FactorizedLinear)
    assert emb.parametrizations.d.original is head.parametrizations.d.original
    assert emb.U is head.U and emb.V is head.V
    with torch.no_grad():
        assert torch.allclose(model(x), dense_out, atol=1e-5)
    pruner.prune_now(0.5)
    assert emb.kept_rank == head.kept_rank < 8


def test_optimizer_built_before_attach_is_swapped_and_pruned_ranks_stay_zero():
    torch.manual_seed(0)
    model = TinyTransformerLM(vocab=13, d=8, d_ff=12)
    old = model.blocks[0].ffn.fc_in.weight
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = PruneConfig(
        method="factorized", criterion="taylor", schedule=OneShot(sparsity=0.6, step=1)
    )
    pruner = Pruner(model, cfg).attach(opt)
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    fc_in = model.blocks[0].ffn.fc_in
    assert id(old) not in params
    assert {id(fc_in.U), id(fc_in.parametrizations.d.original), id(fc_in.V)} <= params
    for x, y in lm_batches(13, 6):
        lm_loss(model, x, y).backward()
        opt.step()
        opt.zero_grad()
    d = fc_in.parametrizations.d.original
    dead = ~fc_in.parametrizations.d[0].mask
    assert dead.any() and bool((d[dead] == 0).all())
    assert bool((opt.state[d]["exp_avg"][dead] == 0).all())
    assert pruner.sparsity() == pytest.approx(0.6, abs=0.15)


def test_factorized_refuses_rnn_weights():
    model = TinyRNNLM()
    with pytest.raises(PrunekitError) as exc:
        Pruner(model, _cfg()).attach()
    assert str(exc.value) == (
        "method=factorized cannot factorize 1 layer: rnn (LSTM); it supports nn.Linear, Hugging "
        "Face Conv1D, nn.Conv1d / Conv2d with groups=1 and nn.Embedding (method_args "
        "embeddings=true): exclude it (scope.exclude=['rnn']) or use method=unstructured"
    )
    assert isinstance(model.embed, nn.Embedding)  # nothing was replaced
    Pruner(model, _cfg(scope=ScopeConfig(exclude=["rnn"]))).attach()
    assert isinstance(model.lm_head, FactorizedLinear)


def test_factorized_without_embeddings():
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 3))
    cfg = _cfg(method_args={"embeddings": False})
    with pytest.raises(PrunekitError, match="exclude it \\(scope.exclude=\\['0'\\]\\)"):
        Pruner(model, cfg).attach()
    cfg = _cfg(method_args={"embeddings": False}, scope=ScopeConfig(exclude=["0"]))
    Pruner(model, cfg).attach()
    assert isinstance(model[0], nn.Embedding) and isinstance(model[1], FactorizedLinear)
