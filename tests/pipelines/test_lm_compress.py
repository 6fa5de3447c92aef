"""Compressing a trained baseline by recipe: sizes reached, checkpoints written, runs resumable."""

import json

import pytest
import torch

from prunekit.config import parse_recipe
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_artifact import load_lm_artifact
from prunekit.pipelines.lm_baseline import prepare_data, train_baseline
from prunekit.pipelines.lm_compress import check_sections, compress, load_trained
from prunekit.prune import count_params
from prunekit.train.checkpoint import read_checkpoint_state, save_checkpoint


@pytest.fixture(scope="module")
def trained(tiny_corpus, tiny_recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    cfg = parse_recipe(tiny_recipe(tiny_corpus, steps=10, eval_every=10))
    train_baseline(cfg, out, progress=False)
    return cfg, prepare_data(cfg), out / "checkpoints" / "best"


def _section(**kw):
    return {"name": "v", "steps": 12, "frequency": 2, "ramp": 0.5, "sizes": [0.5, 0.25], **kw}


def _cfg(cfg, **section):
    return parse_recipe({**cfg.model_dump(mode="json"), "prune": [_section(**section)]})


@pytest.mark.parametrize("method", ["unstructured", "factorized", "structured"])
def test_incremental_run_delivers_every_size(trained, tmp_path, method):
    cfg, data, best = trained
    cfg = _cfg(cfg, method=method)
    base = count_params(load_trained(best))
    rows = compress(cfg, cfg.prune[0], best, data, tmp_path, progress=False)
    assert [r["target_params"] for r in rows] == [int(0.5 * base), int(0.25 * base)]
    for r in rows:
        assert r["effective_params"] <= r["target_params"]
        assert r["valid_ppl"] > 1 and r["baseline_params"] == base
        assert r["masked_size_bytes"] > 0 and "size_bytes" not in r  # masks: not the model's size
    # ramp 0.5 of 12 steps every 2: updates after steps 1, 3, 5, 7; 5 recovery steps for each size
    assert rows[0]["pruned_at_step"] < rows[1]["pruned_at_step"] == 7
    assert [r["finetune_steps"] for r in rows] == [5, 5]
    assert [r["step"] for r in rows] == [r["pruned_at_step"] + 5 for r in rows]
    size_dir = tmp_path / f"size-{rows[0]['target_params']}"
    assert (size_dir / "reached" / "model.safetensors").exists()
    assert rows[0]["checkpoint"] == str(size_dir / "checkpoints" / "last")
    assert json.loads((tmp_path / "result.json").read_text())["rows"][1]["step"] == 12


def test_each_size_is_reached_exactly_and_then_fine_tuned(trained, tmp_path):
    """The schedule lands on every larger size (not past it), and each row's model is the one
    measured in its checkpoint, after the same recovery as the smallest size."""
    cfg, data, best = trained
    cfg = _cfg(cfg, criterion="magnitude", sizes=[0.6, 0.3, 0.1], steps=20, ramp=0.75)
    rows = compress(cfg, cfg.prune[0], best, data, tmp_path, progress=False)
    for r in rows:
        assert r["on_target"]
        assert abs(r["effective_params"] - r["target_params"]) <= 0.01 * r["target_params"]
        loaded = load_lm_artifact(r["checkpoint"])
        assert count_params(loaded.model) == r["effective_params"]
    steps = [load_lm_artifact(r["checkpoint"]).description["step"] for r in rows]
    assert steps == [r["finetune_steps"] for r in rows[:-1]] + [20]  # own run / the main run
    assert len({r["finetune_steps"] for r in rows}) == 1 and rows[0]["finetune_steps"] > 0
    assert rows[0]["pruned_at_step"] < rows[1]["pruned_at_step"] < rows[2]["pruned_at_step"]


def test_a_schedule_that_never_prunes_is_an_error(trained):
    cfg, _, best = trained
    for steps in (1, 2):  # frequency 2: no update after step 0 fits
        bad = _cfg(cfg, steps=steps)
        with pytest.raises(PrunekitError, match=r"steps=\d with frequency=2 leaves no pruning"):
            check_sections(bad, load_trained(best))
    few = _cfg(cfg, steps=4)  # one update after step 0: cannot stop at 50 % and end at 25 %
    with pytest.raises(PrunekitError, match="section 'v': 2 sizes need more pruning updates"):
        check_sections(few, load_trained(best))


def test_finished_run_is_not_redone(trained, tmp_path):
    cfg, data, best = trained
    cfg = _cfg(cfg, criterion="magnitude")
    first = compress(cfg, cfg.prune[0], best, data, tmp_path, progress=False)
    (tmp_path / "checkpoints").rename(tmp_path / "moved")  # a rerun must not need them
    assert compress(cfg, cfg.prune[0], best, data, tmp_path, progress=False) == first


def test_a_changed_section_or_baseline_is_redone_not_reused(trained, tmp_path, caplog):
    cfg, data, best = trained
    cfg = _cfg(cfg, criterion="magnitude")
    first = compress(cfg, cfg.prune[0], best, data, tmp_path, progress=False)
    other = _cfg(cfg, criterion="magnitude", sizes=[0.4])
    rows = compress(other, other.prune[0], best, data, tmp_path, progress=False)
    assert [r["target_params"] for r in rows] != [r["target_params"] for r in first]
    assert "section.sizes" in caplog.text and "starting it over" in caplog.text
    assert not (tmp_path / f"size-{first[0]['target_params']}").exists()  # no stale milestone
    again = compress(cfg, cfg.prune[0], best, data, tmp_path, progress=False)
    assert [r["target_params"] for r in again] == [r["target_params"] for r in first]
    assert not (tmp_path / f"size-{rows[0]['target_params']}").exists()

    caplog.clear()  # another baseline: a copy with one weight changed (a valid checkpoint)
    moved = tmp_path.parent / f"{tmp_path.name}-base"
    model = load_trained(best)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0
    state = read_checkpoint_state(best)["state"]
    save_checkpoint(moved, model, state, files={"tokenizer.model": data.tokenizer.to_bytes()})
    compress(cfg, cfg.prune[0], moved, data, tmp_path, progress=False)
    assert "baseline sha256" in caplog.text and "starting it over" in caplog.text


def test_one_shot_runs_once_per_size(trained, tmp_path):
    cfg, data, best = trained
    cfg = _cfg(cfg, schedule="one-shot", criterion="taylor", calibration_batches=2)
    rows = compress(cfg, cfg.prune[0], best, data, tmp_path, progress=False)
    assert len(rows) == 2
    assert all(r["effective_params"] <= r["target_params"] for r in rows)
    assert all(r["pruned_at_step"] == 0 and r["finetune_steps"] == 12 for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("size-")) == sorted(
        f"size-{r['target_params']}" for r in rows
    )
