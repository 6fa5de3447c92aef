"""Compressing a trained baseline by recipe: sizes reached, checkpoints written, runs resumable."""

import json

import pytest

from prunekit.config import parse_recipe
from prunekit.pipelines.lm_baseline import prepare_data, train_baseline
from prunekit.pipelines.lm_compress import compress, load_trained
from prunekit.prune import count_params


@pytest.fixture(scope="module")
def trained(tiny_corpus, tiny_recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    cfg = parse_recipe(tiny_recipe(tiny_corpus, steps=10, eval_every=10))
    train_baseline(cfg, out, progress=False)
    return cfg, prepare_data(cfg), out / "checkpoints" / "best"


def _section(**kw):
    return {"name": "v", "steps": 12, "frequency": 2, "ramp": 0.5, "sizes": [0.5, 0.25], **kw}


@pytest.mark.parametrize("method", ["unstructured", "factorized", "structured"])
def test_incremental_run_delivers_every_size(trained, tmp_path, method):
    cfg, data, best = trained
    cfg = parse_recipe({**cfg.model_dump(mode="json"), "prune": [_section(method=method)]})
    base = count_params(load_trained(best))
    rows = compress(cfg, cfg.prune[0], best, data, tmp_path)
    assert [r["target_params"] for r in rows] == [int(0.5 * base), int(0.25 * base)]
    for r in rows:
        assert r["effective_params"] <= r["target_params"]
        assert r["valid_ppl"] > 1 and r["baseline_params"] == base
    assert rows[0]["step"] < rows[1]["step"] == 12
    assert (tmp_path / f"size-{rows[0]['target_params']}" / "model.safetensors").exists()
    assert json.loads((tmp_path / "result.json").read_text())["rows"][1]["step"] == 12


def test_finished_run_is_not_redone(trained, tmp_path):
    cfg, data, best = trained
    cfg = parse_recipe({**cfg.model_dump(mode="json"), "prune": [_section(criterion="magnitude")]})
    first = compress(cfg, cfg.prune[0], best, data, tmp_path)
    (tmp_path / "checkpoints").rename(tmp_path / "moved")  # a rerun must not need them
    assert compress(cfg, cfg.prune[0], best, data, tmp_path) == first


def test_one_shot_runs_once_per_size(trained, tmp_path):
    cfg, data, best = trained
    section = _section(schedule="one-shot", criterion="taylor", calibration_batches=2)
    cfg = parse_recipe({**cfg.model_dump(mode="json"), "prune": [section]})
    rows = compress(cfg, cfg.prune[0], best, data, tmp_path)
    assert len(rows) == 2
    assert all(r["effective_params"] <= r["target_params"] for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("size-")) == sorted(
        f"size-{r['target_params']}" for r in rows
    )
