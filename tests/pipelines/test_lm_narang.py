"""`schedule: narang` prune sections on an LSTM LM: trained from scratch with q from the baseline,
compared with the cubic schedule (Taylor) at the sparsity Narang reached."""

import pytest

from prunekit.config import parse_recipe
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import build_lm, prepare_data, train_baseline
from prunekit.pipelines.lm_compress import compress, load_trained
from prunekit.pipelines.lm_narang import check_narang, section_q
from prunekit.prune import ScopeConfig
from prunekit.prune.narang import narang_q

RNN = {"arch": "rnn", "cell": "lstm", "d_embed": 16, "d_hidden": 16, "n_layer": 1}


def _cfg(tiny_corpus, tiny_recipe, **narang):
    raw = tiny_recipe(tiny_corpus, steps=16, eval_every=8)
    raw["model"] = RNN
    section = {"name": "narang", "schedule": "narang", "criterion": "magnitude",
               "scope": {"module_types": ["Linear", "LSTM"]},
               "narang": {"freq": 2, "compare": ["taylor"], **narang}}  # fmt: skip
    return parse_recipe({**raw, "prune": [section]})


def test_narang_section_trains_from_scratch_and_compares(
    tiny_corpus, tiny_recipe, tmp_path, caplog
):
    cfg = _cfg(tiny_corpus, tiny_recipe)
    data = prepare_data(cfg)
    train_baseline(cfg, tmp_path / "base", progress=False)
    best = tmp_path / "base" / "checkpoints" / "best"
    q = section_q(cfg.prune[0], best)
    scope = ScopeConfig(module_types=("Linear", "LSTM"))
    assert q == narang_q(load_trained(best), scope) and set(q) == {"recurrent", "linear"}
    rows = compress(cfg, cfg.prune[0], best, data, tmp_path / "prune")
    assert [r["variant"] for r in rows] == ["narang", "narang-cubic-taylor"]
    narang, cubic = rows
    assert narang["steps"] == cubic["steps"] == 16  # the whole first training, no retraining
    assert 0 < narang["sparsity"] < 1
    assert cubic["sparsity"] == pytest.approx(narang["sparsity"], abs=0.01)
    ramp = narang["prune_config"]["_data"]["schedule"]["_data"]
    assert ramp["q"] == q and ramp["end"] == 8  # paper default: end at 50 % of training
    for r in rows:
        assert r["valid_ppl"] > 1 and r["effective_params"] < r["baseline_params"]
        assert r["size_fraction"] < 1
    assert compress(cfg, cfg.prune[0], best, data, tmp_path / "prune") == rows  # finished: read
    caplog.clear()  # a changed section is redone in its folder, never mixed with the old runs
    changed = _cfg(tiny_corpus, tiny_recipe, compare=[])
    again = compress(changed, changed.prune[0], best, data, tmp_path / "prune")
    assert "section.narang.compare" in caplog.text and "starting it over" in caplog.text
    assert [r["variant"] for r in again] == ["narang"]
    assert not (tmp_path / "prune" / "cubic").exists()


def test_check_narang_catches_a_q_without_the_recurrent_type(tiny_corpus, tiny_recipe):
    cfg = _cfg(tiny_corpus, tiny_recipe, q={"linear": 0.1})
    data = prepare_data(cfg)
    with pytest.raises(PrunekitError, match="NarangRamp.q has no value for rnn.weight_ih_l0"):
        check_narang(cfg, build_lm(cfg, data.tokenizer.vocab_size))


def test_prunekit_train_prunes_while_training(tiny_corpus, tiny_recipe, tmp_path, capsys):
    import json

    import yaml

    from prunekit.cli.main import main

    raw = tiny_recipe(tiny_corpus, steps=12, eval_every=6)
    raw["model"] = RNN
    raw["prune"] = [{"name": "n", "schedule": "narang", "criterion": "magnitude",
                     "scope": {"module_types": ["Linear", "LSTM"]},
                     "narang": {"freq": 2, "q": {"recurrent": 0.1, "linear": 0.1}}},
                    {"name": "noq", "schedule": "narang", "criterion": "magnitude"}]  # fmt: skip
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--prune", "n"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert 0 < shown["sparsity"] < 1 and shown["valid_ppl"] > 1
    assert (out / "checkpoints" / "last" / "model.safetensors").is_file()
    assert json.loads((out / "result.json").read_text())["steps"] == 12
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--prune", "x"]) == 2
    assert "has no `schedule: narang` prune section named 'x' (it has ['n', 'noq'])" in (
        capsys.readouterr().err
    )
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--prune", "noq"]) == 2
    assert "needs narang.q or narang.q_from" in capsys.readouterr().err
