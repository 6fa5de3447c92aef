"""Pruner: optimizer-hook integration, manual loop, bit-identical resume, Narang, errors."""

import json

import pytest
import torch
from prune_standins import TinyRNNLM, TinyTransformerLM, lm_batches, lm_loss
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune import (
    Cubic,
    NarangRamp,
    OneShot,
    PruneConfig,
    Pruner,
    ScopeConfig,
    count_params,
)
from prunekit.prune.schedules import round_half_up
from prunekit.prune.stats import abs_percentile

BATCHES = lm_batches(13, 20, seed=3)
TAYLOR_CUBIC = PruneConfig(criterion="taylor", schedule=Cubic(s_f=0.7, t0=2, dt=3, n=4))


def _model(seed=0):
    torch.manual_seed(seed)
    return TinyTransformerLM(vocab=13)


def _train(model, opt, steps):
    for i in steps:
        x, y = BATCHES[i]
        lm_loss(model, x, y).backward()
        opt.step()
        opt.zero_grad()


def test_plain_user_loop_needs_only_attach():
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pruner = Pruner(model, TAYLOR_CUBIC).attach(opt)
    schedule = TAYLOR_CUBIC.schedule
    for step in range(16):
        x, y = BATCHES[step]
        lm_loss(model, x, y).backward()
        opt.step()
        opt.zero_grad()
        assert pruner.next_step == step + 1
        stats = pruner._stats["blocks.0.ffn.fc_in.weight"]
        since_update = step - max([t for t in range(step + 1) if schedule.should_update(t)] or [-1])
        assert int(stats["taylor_count"]) == (since_update if step < schedule.last_step else 0)
        for name, m in pruner.masks().items():
            assert int((~m).sum()) == round_half_up(schedule(step) * m.numel()), (step, name)


def test_manual_loop_with_accumulate_and_step():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, TAYLOR_CUBIC).attach()
    updated = []
    for step in range(15):
        x, y = BATCHES[step]
        lm_loss(model, x, y).backward()
        pruner.accumulate()
        opt.step()
        opt.zero_grad()
        if pruner.step(step):
            updated.append(step)
    assert updated == [2, 5, 8, 11, 14]
    assert pruner.sparsity() == pytest.approx(0.7, abs=0.01)


def _opt(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)


def test_resume_gives_bit_identical_masks_and_weights(tmp_path):
    ref = _model()
    ref_opt = _opt(ref)
    Pruner(ref, TAYLOR_CUBIC).attach(ref_opt)
    _train(ref, ref_opt, range(20))

    first = _model()
    first_opt = _opt(first)
    first_pruner = Pruner(first, TAYLOR_CUBIC).attach(first_opt)
    _train(first, first_opt, range(10))  # stop mid-interval: accumulators are non-empty
    state = first_pruner.state_dict()
    assert float(state["tensors"]["stats/blocks.0.ffn.fc_in.weight/taylor_count"]) == 1
    save_file(state["tensors"], tmp_path / "pruner.safetensors")
    meta = json.dumps(state["meta"])
    model_sd = {k: v.clone() for k, v in first.state_dict().items()}
    opt_sd = first_opt.state_dict()

    resumed = _model(seed=123)  # different init: everything must come from the checkpoint
    resumed_opt = _opt(resumed)
    resumed_pruner = Pruner(resumed, TAYLOR_CUBIC).attach(resumed_opt)
    resumed.load_state_dict(model_sd)
    resumed_opt.load_state_dict(opt_sd)
    resumed_pruner.load_state_dict(
        {"meta": json.loads(meta), "tensors": load_file(tmp_path / "pruner.safetensors")}
    )
    assert resumed_pruner.next_step == 10
    _train(resumed, resumed_opt, range(10, 20))

    ref_sd, res_sd = ref.state_dict(), resumed.state_dict()
    assert ref_sd.keys() == res_sd.keys()
    for k in ref_sd:
        assert torch.equal(ref_sd[k], res_sd[k]), k
    assert any(k.endswith(".mask") and not bool(v.all()) for k, v in res_sd.items())


def test_narang_in_training_loop_and_q_is_resumable():
    torch.manual_seed(0)
    model = TinyRNNLM()
    schedule = NarangRamp(start=0, ramp=4, end=10, freq=2, slope_mult=2.0, q_percentile=90)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    cfg = PruneConfig(schedule=schedule, scope=ScopeConfig(group_embedding=False))
    pruner = Pruner(model, cfg).attach(opt)
    q = {t.name: abs_percentile(t.param, 90) for t in pruner.targets}
    assert pruner._q == q
    batches = lm_batches(11, 10)
    for step in range(10):
        x, y = batches[step]
        lm_loss(model, x, y).backward()
        opt.step()  # the post-hook updates masks at steps 2, 4, 6, 8
        opt.zero_grad()
        if schedule.should_update(step):
            for t in pruner.targets:
                kept = pruner.masks()[t.name]
                assert bool((t.param[kept].abs() > schedule.threshold(step, q[t.name])).all())
                assert bool((t.param[~kept] == 0).all())
    assert 0 < pruner.sparsity() < 1
    other = Pruner(TinyRNNLM(), cfg).attach()
    other.load_state_dict(pruner.state_dict())
    assert other._q == q


def test_narang_update_prunes_exactly_below_threshold():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10, bias=False))
    schedule = NarangRamp(start=0, ramp=2, end=6, freq=2, slope_mult=1.5, q_percentile=50)
    pruner = Pruner(model, PruneConfig(schedule=schedule)).attach()
    w = model[0].parametrizations.weight.original.detach().clone()
    q = abs_percentile(w, 50)
    assert pruner.step(2)
    eps = schedule.threshold(2, q)
    assert torch.equal(pruner.masks()["0.weight"], w.abs() > eps)


def test_prune_now_taylor_without_gradients():
    model = _model()
    pruner = Pruner(model, PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5))).attach()
    with pytest.raises(PrunekitError) as exc:
        pruner.prune_now(0.5)
    assert str(exc.value) == (
        "criterion=taylor needs gradients: call pruner.accumulate() after loss.backward() on "
        "calibration batches"
    )
    with pytest.raises(PrunekitError) as exc:
        pruner.accumulate()
    assert str(exc.value) == (
        "pruner.accumulate() found no gradients: call it after loss.backward() and before "
        "optimizer.zero_grad()"
    )


def test_activation_without_inputs():
    pruner = Pruner(_model(), PruneConfig(criterion="activation", schedule=OneShot(sparsity=0.5)))
    pruner.attach()
    with pytest.raises(PrunekitError) as exc:
        pruner.prune_now(0.5)
    assert str(exc.value) == (
        "criterion=activation needs layer inputs: run forward passes on calibration batches "
        "inside `with pruner.calibration():` (or in training mode) before pruning"
    )


def test_use_before_attach_and_bad_step():
    pruner = Pruner(_model(), PruneConfig(schedule=OneShot(sparsity=0.5)))
    with pytest.raises(PrunekitError) as exc:
        pruner.step(0)
    assert str(exc.value) == "the Pruner has no masks yet: call pruner.attach() first"
    pruner.attach()
    with pytest.raises(PrunekitError) as exc:
        pruner.step(-1)
    assert str(exc.value) == "step=-1 must be an integer >= 0 (0 after the first step)"
    with pytest.raises(PrunekitError) as exc:
        pruner.prune_now(1.0)
    assert str(exc.value).startswith("sparsity=1.0 must be in [0, 1)")


def test_load_state_dict_checks():
    a = Pruner(_model(), PruneConfig(schedule=OneShot(sparsity=0.5))).attach()
    b = Pruner(_model(), PruneConfig(schedule=OneShot(sparsity=0.6))).attach()
    with pytest.raises(PrunekitError) as exc:
        b.load_state_dict(a.state_dict())
    assert str(exc.value) == (
        "the pruner state was saved with another PruneConfig: build the Pruner with the "
        "checkpoint's config (PruneConfig.from_dict(state['meta']['config']))"
    )
    with pytest.raises(PrunekitError) as exc:
        b.load_state_dict({"meta": {}, "tensors": {}})
    assert str(exc.value) == (
        "not a prunekit pruner state (format=None, version=None): pass what "
        "Pruner.state_dict() returned"
    )
    c = Pruner(TinyTransformerLM(n_layer=1), PruneConfig(schedule=OneShot(sparsity=0.5))).attach()
    with pytest.raises(PrunekitError) as exc:
        c.load_state_dict(a.state_dict())
    assert str(exc.value) == (
        "the pruner state covers other tensors than this model's scope: load it into the same "
        "architecture"
    )


def test_counts_and_report():
    model = _model()
    total = count_params(model)
    pruner = Pruner(model, PruneConfig(schedule=OneShot(sparsity=0.5))).attach()
    pruner.prune_now(0.5)
    removed = sum(int((~m).sum()) for m in pruner.masks().values())
    assert pruner.param_count_after() == total - removed
    rows = pruner.report()
    assert {r["name"] for r in rows} == set(pruner.masks())
    assert all(r["sparsity"] == pytest.approx(0.5, abs=0.02) for r in rows)
    assert json.loads(json.dumps(rows)) == rows
