"""Exact resume of seed 000's stages and Narang's run on the CTC acoustic model after a kill:
weights, U and V, masks, optimizer state and RNG come back bit for bit."""

import pytest
import torch
from am_tiny import tiny_feats, tiny_spec
from safetensors.torch import load_file

import prunekit.pipelines.lowrank as lowrank_pipeline
import prunekit.pipelines.prune_train as prune_train
from prunekit.bench.am_spec import parse_am_spec
from prunekit.pipelines.am_compress import lowrank_am, narang_am
from prunekit.pipelines.asr import train_acoustic_model
from prunekit.train.trainer import Trainer


class Killed(RuntimeError):
    pass


def _killing(stage: int | None, at: int):
    class KillingTrainer(Trainer):
        def train_step(self):
            if self.run_state.get("stage") == stage and self.step == at:
                raise Killed(f"killed at step {self.step}")
            return super().train_step()

    return KillingTrainer


@pytest.fixture(scope="module")
def setup():
    spec = parse_am_spec(tiny_spec())
    return spec.recipe(), tiny_feats()


def _same_checkpoints(a, b, names):
    for name in names:
        for file in ("model.safetensors", "extra.safetensors"):  # weights; optimizer + RNG
            ta, tb = load_file(str(a / name / file)), load_file(str(b / name / file))
            assert ta.keys() == tb.keys(), (name, file)
            for k in ta:
                assert torch.equal(ta[k], tb[k]), (name, file, k)


@pytest.mark.parametrize(("stage", "at"), [(1, 5), (2, 3)])
def test_lowrank_stages_of_the_acoustic_model_resume_exactly(
    tmp_path, monkeypatch, setup, stage, at
):
    recipe, feats = setup
    section = recipe.lowrank[0].grid()[1]  # trace norm, lambda_rec = lambda_nonrec = 1e-3
    straight = lowrank_am(recipe, section, feats, tmp_path / "a", progress=False)
    monkeypatch.setattr(lowrank_pipeline, "Trainer", _killing(stage, at))
    with pytest.raises(Killed):
        lowrank_am(recipe, section, feats, tmp_path / "b", progress=False)
    monkeypatch.setattr(lowrank_pipeline, "Trainer", Trainer)
    resumed = lowrank_am(recipe, section, feats, tmp_path / "b", progress=False)
    assert [r["ranks"] for r in resumed] == [r["ranks"] for r in straight]
    assert [r["valid_loss"] for r in resumed] == [r["valid_loss"] for r in straight]
    assert [r["test_cer"] for r in resumed] == [r["test_cer"] for r in straight]
    point = tmp_path / "a" / section.name
    stages = ["stage1"] + [f"stage2-{t:g}" for t in section.thresholds]
    names = [f"{s}/checkpoints/last" for s in stages]
    _same_checkpoints(point, tmp_path / "b" / section.name, names)
    stage1 = load_file(str(point / "stage1/checkpoints/last/model.safetensors"))
    assert any(k.endswith("weight_hh_l0.original0") for k in stage1)  # U and V are compared


def test_narang_run_of_the_acoustic_model_resumes_exactly(tmp_path, monkeypatch, setup):
    recipe, feats = setup
    train_acoustic_model(recipe.am, feats, tmp_path / "dense", progress=False)
    dense = tmp_path / "dense" / "checkpoints" / "best"
    section = recipe.prune[0]
    straight = narang_am(recipe, section, feats, tmp_path / "a", dense=dense, progress=False)
    monkeypatch.setattr(prune_train, "Trainer", _killing(None, 5))
    with pytest.raises(Killed):
        narang_am(recipe, section, feats, tmp_path / "b", dense=dense, progress=False)
    monkeypatch.setattr(prune_train, "Trainer", Trainer)
    resumed = narang_am(recipe, section, feats, tmp_path / "b", dense=dense, progress=False)
    for key in ("sparsity", "effective_params", "valid_loss", "test_cer"):
        assert [r[key] for r in resumed] == [r[key] for r in straight]
    assert straight[0]["sparsity"] > 0.5
    names = ["narang/checkpoints/last", "cubic/magnitude/checkpoints/last"]
    _same_checkpoints(tmp_path / "a", tmp_path / "b", names)
    weights = load_file(str(tmp_path / "a/narang/checkpoints/last/model.safetensors"))
    assert any("mask" in k for k in weights)  # the masks are part of what is compared
