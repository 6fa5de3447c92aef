"""Seed 000's two stages on any model + Task: ranks, honest sizes, and exact resume after a kill."""

import json

import pytest
import torch
from safetensors.torch import load_file

import prunekit.pipelines.lowrank as lowrank_pipeline
from prunekit.config import TrainConfig
from prunekit.errors import PrunekitError
from prunekit.lowrank import LowRankSection, factors
from prunekit.pipelines.lowrank import run_lowrank
from prunekit.train.trainer import Trainer
from rnn_standins import SeqTask, Stack

TRAIN = TrainConfig(steps=12, lr=0.02, warmup_steps=2, eval_every=6, checkpoint_every=2,
                    log_every=2, weight_decay=0.01)  # fmt: skip


def _section(**kw):
    base = {"name": "tn", "lambda_rec": 1e-3, "lambda_nonrec": 1e-3, "thresholds": [0.6, 0.9],
            "stage2_steps": 6, "stage2_lr": 0.01, "nu_every": 4}  # fmt: skip
    return LowRankSection(**{**base, **kw})


def _model(cell="gru"):
    torch.manual_seed(0)
    return Stack(cell, hidden=16, d=16)


@pytest.mark.parametrize("regularizer", ["tracenorm", "l2"])
def test_two_stages_give_smaller_models_with_the_planned_ranks(tmp_path, regularizer):
    template = _model("lstm")
    section = _section(regularizer=regularizer)
    result = run_lowrank(template, SeqTask(), TRAIN, section, tmp_path,
                         evaluate=lambda m: {"probe": 1.0}, progress=False)  # fmt: skip
    assert result["stage1"]["steps"] == 12 and result["stage1"]["regularizer"] == regularizer
    nu_log = json.loads((tmp_path / "stage1" / "nu.json").read_text())
    assert [r["step"] for r in nu_log["rows"]] == [0, 4, 8, 12]
    assert set(nu_log["rows"][0]["nu"]) == set(result["stage1"]["matrices"])
    rows = result["rows"]
    assert [r["threshold"] for r in rows] == [0.6, 0.9]
    for r in rows:
        assert r["params"] < r["dense_params"] and r["scope_params"] < r["scope_dense_params"]
        assert r["flops_per_token"] < r["dense_flops_per_token"]
        assert r["stage2_steps"] == 6 and r["probe"] == 1.0 and r["valid_loss"] > 0
        saved = load_file(
            str(tmp_path / f"stage2-{r['threshold']:g}/checkpoints/best/model.safetensors")
        )
        for name, rank in r["ranks"].items():
            mod, attr = name.rsplit(".", 1)
            assert saved[f"{mod}.parametrizations.{attr}.original0"].shape[1] == rank
        assert set(r["dense_matrices"]).isdisjoint(r["ranks"])
    assert sum(rows[0]["ranks"].values()) <= sum(rows[1]["ranks"].values())
    assert rows[0]["params"] <= rows[1]["params"]
    # finished stages are read back, not rerun
    again = run_lowrank(template, SeqTask(), TRAIN, section, tmp_path, progress=False)
    assert [r["params"] for r in again["rows"]] == [r["params"] for r in rows]
    assert sum(p.numel() for p in template.parameters()) == rows[0]["dense_params"]  # untouched


def test_stage2_starts_from_the_truncated_stage1_weights(tmp_path):
    template = _model()
    section = _section(thresholds=[0.7], stage2_steps=1, stage2_lr=1e-9)
    result = run_lowrank(template, SeqTask(), TRAIN, section, tmp_path, progress=False)
    plan = result["rows"][0]["ranks"]
    assert plan
    stage1 = load_file(str(tmp_path / "stage1/checkpoints/best/model.safetensors"))
    stage2 = load_file(str(tmp_path / "stage2-0.7/checkpoints/last/model.safetensors"))
    name = next(iter(plan))
    mod, attr = name.rsplit(".", 1)
    key = f"{mod}.parametrizations.{attr}"
    w1 = stage1[f"{key}.original0"] @ stage1[f"{key}.original1"]
    u, s, vh = torch.linalg.svd(w1.double(), full_matrices=False)
    r = plan[name]
    w2 = stage2[f"{key}.original0"] @ stage2[f"{key}.original1"]
    assert torch.allclose(w2.double(), (u[:, :r] * s[:r]) @ vh[:r], atol=1e-4)


class Killed(RuntimeError):
    pass


def _killing_trainer(kill_stage: int, kill_at: int):
    class KillingTrainer(Trainer):
        def train_step(self):
            stage = self.run_state.get("stage")
            if stage == kill_stage and self.step == kill_at:
                raise Killed(f"killed at step {self.step} of stage {stage}")
            return super().train_step()

    return KillingTrainer


@pytest.mark.parametrize(("stage", "at"), [(1, 5), (2, 3)])
def test_a_killed_run_resumes_exactly(tmp_path, monkeypatch, stage, at):
    section = _section(thresholds=[0.8])
    straight = run_lowrank(_model(), SeqTask(), TRAIN, section, tmp_path / "a", progress=False)
    monkeypatch.setattr(lowrank_pipeline, "Trainer", _killing_trainer(stage, at))
    with pytest.raises(Killed):
        run_lowrank(_model(), SeqTask(), TRAIN, section, tmp_path / "b", progress=False)
    monkeypatch.setattr(lowrank_pipeline, "Trainer", Trainer)
    resumed = run_lowrank(_model(), SeqTask(), TRAIN, section, tmp_path / "b", progress=False)
    for key in ("best_valid_loss", "history"):
        assert resumed["stage1"][key] == straight["stage1"][key]
    a, b = straight["rows"][0], resumed["rows"][0]
    assert a["ranks"] == b["ranks"] and a["valid_loss"] == b["valid_loss"]
    for which in ("stage1", "stage2-0.8"):
        wa = load_file(str(tmp_path / "a" / which / "checkpoints/last/model.safetensors"))
        wb = load_file(str(tmp_path / "b" / which / "checkpoints/last/model.safetensors"))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    nu_a = json.loads((tmp_path / "a/stage1/nu.json").read_text())
    assert nu_a == json.loads((tmp_path / "b/stage1/nu.json").read_text())


def test_stage1_trains_without_weight_decay_and_factored_for_tracenorm():
    cfg = lowrank_pipeline.stage1_config(TRAIN, _section(stage1_steps=4))
    assert cfg.weight_decay == 0.0 and cfg.steps == 4 and cfg.eval_every == 4
    cfg2 = lowrank_pipeline.stage2_config(TRAIN, _section())
    assert (cfg2.steps, cfg2.lr, cfg2.weight_decay) == (6, 0.01, 0.0)
    model, mats = lowrank_pipeline._stage1_model(_model(), _section())
    U, V = factors(model.rnn, "weight_hh_l0")
    assert U.shape == (48, 16) and V.shape == (16, 16)
    plain, _ = lowrank_pipeline._stage1_model(_model(), _section(regularizer="l2"))
    assert isinstance(plain.rnn.weight_hh_l0, torch.nn.Parameter)


@pytest.mark.parametrize("regularizer", ["tracenorm", "l2"])
def test_a_warm_start_trains_plain_then_factors_the_warm_weights_exactly(tmp_path, regularizer):
    section = _section(regularizer=regularizer, warm_steps=4, thresholds=[0.9])
    result = run_lowrank(_model(), SeqTask(), TRAIN, section, tmp_path, progress=False)
    warm = json.loads((tmp_path / "stage1/warm/result.json").read_text())
    assert warm["steps"] == 4
    stage1 = result["stage1"]
    assert (stage1["steps"], stage1["warm_steps"]) == (12, 4)
    assert [s for s, _ in stage1["history"]["train"]] == [2, 4, 6, 8, 10, 12]
    assert stage1["train_seconds"] > warm["train_seconds"]
    # stage 1 starts from the warm start's final weights (factored at full rank: W = U V exactly)
    model, _ = lowrank_pipeline._stage1_model(
        _model(), section, tmp_path / "stage1/warm/checkpoints/last"
    )
    saved = load_file(str(tmp_path / "stage1/warm/checkpoints/last/model.safetensors"))
    assert torch.allclose(model.rnn.weight_hh_l0, saved["rnn.weight_hh_l0"], atol=1e-5)
    nu_log = json.loads((tmp_path / "stage1/nu.json").read_text())
    assert [r["step"] for r in nu_log["rows"]] == [0, 4, 8]  # counted from the warm start's end


def test_a_run_killed_in_its_warm_start_resumes_exactly(tmp_path, monkeypatch):
    section = _section(warm_steps=4, thresholds=[0.8])
    straight = run_lowrank(_model(), SeqTask(), TRAIN, section, tmp_path / "a", progress=False)
    monkeypatch.setattr(lowrank_pipeline, "Trainer", _killing_trainer(0, 3))
    with pytest.raises(Killed):
        run_lowrank(_model(), SeqTask(), TRAIN, section, tmp_path / "b", progress=False)
    monkeypatch.setattr(lowrank_pipeline, "Trainer", Trainer)
    resumed = run_lowrank(_model(), SeqTask(), TRAIN, section, tmp_path / "b", progress=False)
    assert resumed["stage1"]["history"] == straight["stage1"]["history"]
    wa = load_file(str(tmp_path / "a/stage2-0.8/checkpoints/last/model.safetensors"))
    wb = load_file(str(tmp_path / "b/stage2-0.8/checkpoints/last/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_warm_start_as_long_as_stage1_is_refused():
    with pytest.raises(PrunekitError, match="lower warm_steps"):
        lowrank_pipeline.stage1_config(TRAIN, _section(warm_steps=12))
    cfg = lowrank_pipeline.stage1_config(TRAIN, _section(warm_steps=4))
    assert (cfg.steps, cfg.warmup_steps) == (8, 0)
    warm = lowrank_pipeline.warm_config(TRAIN, _section(warm_steps=4))
    assert (warm.steps, warm.decay, warm.lr, warm.weight_decay) == (4, "constant", 0.02, 0.0)
