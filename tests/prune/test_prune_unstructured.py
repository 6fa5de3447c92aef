"""Unstructured pruning: exact counts (layer and global budgets), ties, embeddings, tied weights."""

import pytest
import torch
import torch.nn.functional as F
from prune_standins import TinyTransformerLM, lm_batches, lm_loss
from torch import nn

from prunekit.prune import Cubic, OneShot, PruneConfig, Pruner, ScopeConfig, prune_
from prunekit.prune.schedules import round_half_up


def _model(**kw):
    torch.manual_seed(0)
    return TinyTransformerLM(**kw)


@pytest.mark.parametrize("s", [0.0, 0.37, 0.5, 0.93])
def test_layer_budget_exact_per_tensor(s):
    model = _model()
    pruner = Pruner(model, PruneConfig(schedule=OneShot(sparsity=s))).attach()
    pruner.prune_now(s)
    masks = pruner.masks()
    assert len(masks) == 1 + 2 * 6 + 1  # embed, 2 x (q, k, v, out, fc_in, fc_out), lm_head
    for name, m in masks.items():
        assert int((~m).sum()) == round_half_up(s * m.numel()), name
        mod_name, _, attr = name.rpartition(".")
        effective = getattr(model.get_submodule(mod_name), attr)
        assert torch.equal(effective == 0, ~m | (effective == 0))  # pruned entries read as 0
    assert not any("rel_k" in n for n in masks)


@pytest.mark.parametrize("s", [0.21, 0.6])
def test_global_budget_exact_over_scope(s):
    model = _model()
    cfg = PruneConfig(schedule=OneShot(sparsity=s), budget="global")
    pruner = Pruner(model, cfg).attach()
    pruner.prune_now(s)
    masks = pruner.masks()
    total = sum(m.numel() for m in masks.values())
    removed = sum(int((~m).sum()) for m in masks.values())
    assert removed == round_half_up(s * total)
    assert pruner.sparsity() == pytest.approx(removed / total)
    per_tensor = {int((~m).sum()) / m.numel() for m in masks.values()}
    assert len(per_tensor) > 1  # one ranking, not a per-layer split


def test_ties_broken_by_index_never_over_prune():
    model = nn.Sequential(nn.Linear(4, 4, bias=False))
    nn.init.ones_(model[0].weight)
    prune_(model, PruneConfig(schedule=OneShot(sparsity=0.3)))
    zeros = (model[0].weight == 0).flatten()
    assert int(zeros.sum()) == round_half_up(0.3 * 16)  # 5, not all 16 equal weights
    assert zeros.nonzero().flatten().tolist() == [0, 1, 2, 3, 4]


def test_global_ties_across_tensors():
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    for m in model:
        nn.init.constant_(m.weight, 0.5)
    prune_(model, PruneConfig(schedule=OneShot(sparsity=0.5), budget="global"))
    assert [int((m.weight == 0).sum()) for m in model] == [9, 0]


def test_embedding_scores_grouped_over_vocab_keep_every_subword():
    model = _model(vocab=20)
    x, y = lm_batches(20, 1, B=1, T=3)[0]  # few tokens: most embedding rows get no gradient
    for group, all_rows_alive in [(True, True), (False, False)]:
        m = _model(vocab=20)
        scope = ScopeConfig(include=["embed"], group_embedding=group)
        prune_(
            m,
            PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5), scope=scope),
            calibration=[(x, y)],
            loss_fn=lm_loss,
        )
        rows_alive = (m.embed.weight != 0).any(dim=1)
        assert bool(rows_alive.all()) == all_rows_alive
    del model


def test_embedding_magnitude_prunes_whole_columns():
    m = _model(vocab=10, d=8)
    with torch.no_grad():
        m.embed.weight.mul_(torch.tensor([1, 5, 0.1, 5, 5, 0.2, 5, 5]))
    prune_(m, PruneConfig(schedule=OneShot(sparsity=0.25), scope=ScopeConfig(include=["embed"])))
    dead_cols = (m.embed.weight == 0).all(dim=0).nonzero().flatten().tolist()
    assert dead_cols == [2, 5]
    assert int((m.embed.weight == 0).sum()) == 20


def test_tied_weight_pruned_once_and_masked_everywhere():
    m = _model(tie=True)
    pruner = Pruner(m, PruneConfig(schedule=OneShot(sparsity=0.5))).attach()
    names = [t.name for t in pruner.targets]
    assert "embed.weight" in names and "lm_head.weight" not in names
    tied = next(t for t in pruner.targets if t.name == "embed.weight")
    assert [a.name for a in tied.aliases] == ["embed.weight", "lm_head.weight"]
    pruner.prune_now(0.5)
    assert torch.equal(m.lm_head.weight, m.embed.weight)
    assert int((m.embed.weight == 0).sum()) == 13 * 8 // 2
    assert m.lm_head.parametrizations.weight[0] is m.embed.parametrizations.weight[0]


def test_masks_monotone_and_on_schedule_under_cubic():
    torch.manual_seed(0)
    m = _model()
    schedule = Cubic(s_f=0.8, t0=1, dt=2, n=4)
    opt = torch.optim.AdamW(m.parameters(), lr=0.05)
    pruner = Pruner(m, PruneConfig(schedule=schedule)).attach(opt)
    prev = {k: v.clone() for k, v in pruner.masks().items()}
    for step, (x, y) in enumerate(lm_batches(13, 12)):
        F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()
        opt.step()
        opt.zero_grad()
        now = pruner.masks()
        for k in now:
            assert not bool((now[k] & ~prev[k]).any()), "a pruned weight came back"
            assert int((~now[k]).sum()) == round_half_up(schedule(step) * now[k].numel())
        prev = {k: v.clone() for k, v in now.items()}
    assert pruner.sparsity() == pytest.approx(0.8, abs=0.01)
