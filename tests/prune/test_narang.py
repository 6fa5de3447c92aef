"""Narang et al.'s ramp: q from a trained dense model per layer type, the paper's iterations,
pruning during the first training with exact resume, and the cubic / Taylor comparison."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import prunekit.pipelines.prune_train as prune_train
from prunekit.config import TrainConfig, parse_recipe
from prunekit.errors import PrunekitError
from prunekit.prune import NarangRamp, PruneConfig, Pruner, ScopeConfig, schedule_from_dict
from prunekit.prune.narang import layer_type, narang_q, paper_ramp, target_q
from prunekit.prune.scope import resolve_scope
from prunekit.prune.stats import abs_percentile
from prunekit.train.trainer import Trainer
from rnn_standins import SeqTask, Stack


def _stack():
    torch.manual_seed(0)
    return Stack("gru", hidden=16, d=16)


def test_q_per_layer_type_pools_the_tensors_of_that_type():
    model = _stack()
    q = narang_q(model, percentile=90)
    rec = torch.cat([model.rnn.get_parameter(n).reshape(-1) for n in
                     ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1")])  # fmt: skip
    lin = torch.cat([model.input.weight.reshape(-1), model.head.weight.reshape(-1)])
    assert q == {"recurrent": abs_percentile(rec, 90), "linear": abs_percentile(lin, 90)}
    per_tensor = narang_q(model, per="tensor")
    assert per_tensor["rnn.weight_hh_l1"] == abs_percentile(model.rnn.weight_hh_l1, 90)
    assert {layer_type(t) for t in resolve_scope(model, ScopeConfig())} == {"recurrent", "linear"}
    with pytest.raises(PrunekitError, match="per='layer' must be 'type' or 'tensor'"):
        narang_q(model, per="layer")


def test_target_q_prefers_the_tensor_name_then_the_type():
    model = _stack()
    targets = resolve_scope(model, ScopeConfig())
    ramp = NarangRamp(start=0, ramp=2, end=10, freq=2,
                      q={"recurrent": 0.1, "linear": 0.2, "head.weight": 0.3})  # fmt: skip
    q = target_q(targets, ramp)
    assert q["rnn.weight_hh_l0"] == 0.1 and q["input.weight"] == 0.2 and q["head.weight"] == 0.3
    with pytest.raises(PrunekitError) as exc:
        target_q(targets, NarangRamp(start=0, ramp=2, end=10, freq=2, q={"linear": 0.2}))
    assert str(exc.value) == (
        "NarangRamp.q has no value for rnn.weight_ih_l0 (layer type 'recurrent'): add "
        "q['recurrent'] or q['rnn.weight_ih_l0'] (prunekit.prune.narang.narang_q computes them "
        "from a trained dense model)"
    )
    with pytest.raises(PrunekitError, match="^q={'linear': -1} must map layer types"):
        NarangRamp(start=0, ramp=2, end=10, freq=2, q={"linear": -1})


def test_q_travels_with_the_schedule():
    ramp = NarangRamp(start=0, ramp=2, end=10, freq=2, q={"recurrent": 0.1})
    assert schedule_from_dict(ramp.to_dict()) == ramp
    old = NarangRamp(start=0, ramp=2, end=10, freq=2).to_dict()
    del old["_data"]["q"]  # written before q existed
    assert schedule_from_dict(old).q is None


def test_paper_heuristics():
    r = paper_ramp(1000, 100)
    assert (r.start, r.ramp, r.end, r.freq, r.slope_mult) == (100, 250, 500, 100, 1.5)
    short = paper_ramp(40, 6)
    assert (short.start, short.ramp, short.end, short.freq) == (5, 10, 20, 3)
    assert paper_ramp(1000, 100, start=10, end=900, freq=50).freq == 50
    with pytest.raises(PrunekitError, match="never updates"):
        paper_ramp(1000, 100, start=480, end=500, freq=100)


def test_the_ramp_reaches_q_at_end():
    """On fixed weights with q = their 90th percentile and slope 1.5, the threshold is q at `end`;
    the last update (one `freq` earlier) prunes every |w| <= its slightly lower threshold."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(200, 200, bias=False))
    w0 = model[0].weight.detach().clone()
    q = narang_q(model)
    ramp = NarangRamp(start=100, ramp=1000, end=4000, freq=100, slope_mult=1.5, q=q)
    assert ramp.threshold(ramp.end, q["linear"]) == pytest.approx(q["linear"], rel=1e-3)
    pruner = Pruner(model, PruneConfig(schedule=ramp)).attach()
    for step in range(ramp.end):
        pruner.step(step)
    eps = ramp.threshold(ramp.last_step, q["linear"])  # theta (901 + 1.5 * 2901) / 100 = 0.973 q
    assert eps == pytest.approx(0.9727 * q["linear"], rel=1e-3)
    assert pruner.sparsity() == pytest.approx(int((w0.abs() <= eps).sum()) / w0.numel(), abs=1e-9)
    assert 0.85 < pruner.sparsity() < 0.9


TRAIN = TrainConfig(steps=24, lr=0.02, warmup_steps=2, eval_every=12, checkpoint_every=3,
                    log_every=3, weight_decay=0.0)  # fmt: skip


def _narang_config(dense):
    ramp = paper_ramp(TRAIN.steps, 6, freq=2, q=narang_q(dense))
    return PruneConfig(criterion="magnitude", schedule=ramp)


def test_pruning_during_the_first_training_and_exact_resume(tmp_path, monkeypatch):
    dense = _stack()
    Trainer(dense, SeqTask(), TRAIN, tmp_path / "dense", progress=False).fit()
    pcfg = _narang_config(dense)
    straight = prune_train.train_pruned(_stack(), SeqTask(), TRAIN, pcfg, tmp_path / "a",
                                        progress=False)  # fmt: skip
    assert straight["steps"] == 24 and 0.2 < straight["sparsity"] < 1.0
    kinds = {r["name"]: r["sparsity"] for r in straight["per_tensor"]}
    assert all(s > 0 for s in kinds.values())

    class Killed(RuntimeError):
        pass

    class KillingTrainer(Trainer):
        def train_step(self):
            if self.step == 14:
                raise Killed
            return super().train_step()

    monkeypatch.setattr(prune_train, "Trainer", KillingTrainer)
    with pytest.raises(Killed):
        prune_train.train_pruned(_stack(), SeqTask(), TRAIN, pcfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(prune_train, "Trainer", Trainer)
    resumed = prune_train.train_pruned(_stack(), SeqTask(), TRAIN, pcfg, tmp_path / "b",
                                       progress=False)  # fmt: skip
    assert resumed == straight | {"train_seconds": resumed["train_seconds"]}
    wa = load_file(str(tmp_path / "a/checkpoints/last/model.safetensors"))
    wb = load_file(str(tmp_path / "b/checkpoints/last/model.safetensors"))
    assert any(k.endswith(".mask") for k in wa)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cubic_comparison_reaches_narangs_sparsity_over_its_window(tmp_path):
    dense = _stack()
    pcfg = _narang_config(dense)
    narang = prune_train.train_pruned(_stack(), SeqTask(), TRAIN, pcfg, tmp_path / "n",
                                      progress=False)  # fmt: skip
    cubic = prune_train.cubic_like(pcfg.schedule, 0.5)
    assert cubic.last_step == pcfg.schedule.last_step and cubic.t0 >= pcfg.schedule.start
    out = prune_train.narang_compare(_stack, SeqTask(), TRAIN, pcfg, narang["sparsity"],
                                     ["magnitude", "taylor"], tmp_path / "c", progress=False)  # fmt: skip
    for criterion, r in out.items():
        assert r["sparsity"] == pytest.approx(narang["sparsity"], abs=0.01), criterion
        assert r["prune_config"]["_data"]["criterion"] == criterion


def test_recipe_narang_section():
    cfg = parse_recipe({"prune": [{"name": "n", "schedule": "narang", "criterion": "magnitude",
                                   "narang": {"start": 10, "end": 90, "q": {"recurrent": 0.1},
                                              "compare": ["taylor"]}}]})  # fmt: skip
    n = cfg.prune[0].narang
    assert (n.start, n.end, n.q, n.compare, n.slope_mult, n.q_per) == (
        10, 90, {"recurrent": 0.1}, ["taylor"], 1.5, "type")  # fmt: skip
    with pytest.raises(PrunekitError, match="recipe key 'prune.0.narang.q_per'"):
        parse_recipe({"prune": [{"name": "n", "schedule": "narang", "narang": {"q_per": "x"}}]})
    with pytest.raises(PrunekitError, match="recipe key 'prune.0.narang.bogus' is not known"):
        parse_recipe({"prune": [{"name": "n", "schedule": "narang", "narang": {"bogus": 1}}]})
