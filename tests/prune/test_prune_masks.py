"""Masks: identity, state_dict, deepcopy (LSTM too), finalize, no regrowth, rollback."""

import copy

import pytest
import torch
from prune_standins import TinyRNNLM, TinyTransformerLM, lm_batches, lm_loss
from torch import nn
from torch.nn.utils import parametrize

from prunekit.errors import PrunekitError
from prunekit.prune import (
    OneShot,
    PruneConfig,
    Pruner,
    attach_masks_from_state_dict,
    finalize,
    get_mask,
    prune_,
)
from prunekit.prune.schedules import round_half_up

CFG = PruneConfig(schedule=OneShot(sparsity=0.5))


def _pruned_rnn(cell="lstm", seed=0):
    torch.manual_seed(seed)
    model = TinyRNNLM(cell=cell)
    prune_(model, CFG)
    return model


def test_attach_keeps_parameter_identity():
    model = TinyRNNLM()
    ids = {n: id(p) for n, p in model.named_parameters()}
    Pruner(model, CFG).attach()
    after = {
        n.replace("parametrizations.", "").replace(".original", ""): id(p)
        for n, p in model.named_parameters()
    }
    assert after == ids


def test_state_dict_round_trip_into_model_with_masks():
    model = _pruned_rnn()
    sd = model.state_dict()
    assert "rnn.parametrizations.weight_hh_l0.0.mask" in sd
    fresh = TinyRNNLM()
    Pruner(fresh, CFG).attach()
    fresh.load_state_dict(sd)
    for name, m in [("rnn", "weight_hh_l1"), ("lm_head", "weight")]:
        a = get_mask(model.get_submodule(name), m).mask
        assert torch.equal(a, get_mask(fresh.get_submodule(name), m).mask)
    x = torch.randint(0, 11, (2, 5))
    assert torch.equal(model(x), fresh(x))


def test_masked_checkpoint_into_plain_model():
    model = _pruned_rnn()
    plain = TinyRNNLM()
    sd = model.state_dict()
    assert attach_masks_from_state_dict(plain, sd) == 6  # embed, 4 LSTM weights, lm_head
    plain.load_state_dict(sd)
    x = torch.randint(0, 11, (2, 5))
    assert torch.equal(model(x), plain(x))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_deepcopy_after_grad_forward_keeps_masks(cell):
    model = _pruned_rnn(cell)
    x, y = lm_batches(11, 1)[0]
    lm_loss(model, x, y).backward()  # RNN _flat_weights now hold non-leaf masked tensors
    clone = copy.deepcopy(model)
    assert torch.equal(
        get_mask(clone.rnn, "weight_ih_l0").mask, get_mask(model.rnn, "weight_ih_l0").mask
    )
    assert get_mask(clone.rnn, "weight_ih_l0") is not get_mask(model.rnn, "weight_ih_l0")
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


def test_deepcopy_then_finalize_copy_leaves_original_working():
    model = _pruned_rnn()
    clone = finalize(copy.deepcopy(model))
    x = torch.randint(0, 11, (2, 5))
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
    assert type(clone.rnn) is nn.LSTM and type(clone.lm_head) is nn.Linear
    assert parametrize.is_parametrized(model.rnn)


def test_deepcopy_transformer_with_tied_masks():
    torch.manual_seed(0)
    model = TinyTransformerLM(tie=True)
    prune_(model, CFG)
    clone = copy.deepcopy(model)
    assert get_mask(clone.lm_head, "weight") is get_mask(clone.embed, "weight")
    assert clone.lm_head.weight.data_ptr() != model.lm_head.weight.data_ptr()


def test_finalize_gives_plain_model_with_zeros():
    model = _pruned_rnn()
    weight_id = id(model.lm_head.parametrizations.weight.original)
    x = torch.randint(0, 11, (2, 5))
    with torch.no_grad():
        before = model(x)
    finalize(model)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert id(model.lm_head.weight) == weight_id
    assert set(model.state_dict()) == set(TinyRNNLM().state_dict())
    assert int((model.rnn.weight_hh_l0 == 0).sum()) == model.rnn.weight_hh_l0.numel() // 2
    with torch.no_grad():
        assert torch.equal(model(x), before)
    copy.deepcopy(model)


@pytest.mark.parametrize(
    ("opt_cls", "kw", "moments"),
    [
        (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}, ["exp_avg", "exp_avg_sq"]),
        (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, ["momentum_buffer"]),
    ],
)
def test_no_regrowth_after_100_steps(opt_cls, kw, moments):
    torch.manual_seed(0)
    model = TinyRNNLM()
    opt = opt_cls(model.parameters(), **kw)
    cfg = PruneConfig(schedule=OneShot(sparsity=0.5, step=5))  # prune after moments exist
    pruner = Pruner(model, cfg).attach(opt)
    batches = lm_batches(11, 10)
    for step in range(100):
        x, y = batches[step % 10]
        lm_loss(model, x, y).backward()
        if step > 5:  # gradients of pruned entries are zero by construction
            for t in pruner.targets:
                assert bool((t.param.grad[~pruner.masks()[t.name]] == 0).all()), t.name
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    for t in pruner.targets:
        mask = pruner.masks()[t.name]
        a = t.aliases[0]
        assert bool((getattr(a.module, a.attr)[~mask] == 0).all()), t.name  # effective
        assert bool((t.param[~mask] == 0).all()), t.name  # stored
        for key in moments:
            assert bool((opt.state[t.param][key][~mask] == 0).all()), (t.name, key)
        assert int((~mask).sum()) == round_half_up(t.param.numel() / 2)


def test_failed_update_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 3))
    pruner = Pruner(model, CFG).attach()
    with torch.no_grad():
        model[0].parametrizations.weight.original[0, 0] = float("nan")
    with pytest.raises(PrunekitError) as exc:
        pruner.prune_now(0.5)
    assert str(exc.value) == (
        "pruning scores of 0.weight contain NaN: the weights or gradients diverged; lower the "
        "learning rate or check the loss before pruning"
    )
    assert bool(pruner.masks()["0.weight"].all())


def test_failed_attach_changes_nothing():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.rnn = nn.LSTM(3, 4)

    model = Bare()
    with pytest.raises(PrunekitError):
        Pruner(model, PruneConfig(method="structured", schedule=OneShot(sparsity=0.5))).attach()
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_second_attach_is_refused():
    model = nn.Sequential(nn.Linear(3, 3))
    pruner = Pruner(model, CFG).attach()
    with pytest.raises(PrunekitError) as exc:
        pruner.attach()
    assert str(exc.value) == (
        "this Pruner is already attached: call attach() once, and add_optimizer() for more "
        "optimizers"
    )
    with pytest.raises(PrunekitError) as exc:
        Pruner(model, CFG).attach()
    assert str(exc.value) == (
        "Linear.weight already has a pruning mask: attach a pruner once per model, or call "
        "prunekit.prune.finalize(model) first"
    )
