"""`arch: fastgrnn`: a FastGRNN language model built, decoded and trained like the LSTM LM."""

import json

import pytest
import torch
import yaml

from prunekit.cli.main import main
from prunekit.errors import PrunekitError
from prunekit.models import build_model, model_config
from prunekit.models.fastgrnn import FastGRNNCell, FastRNNCell
from prunekit.models.fastgrnn_lm import FastGRNNLM
from prunekit.recipes import builtin

CONFIG = {
    "arch": "fastgrnn",
    "vocab_size": 13,
    "d_embed": 6,
    "d_hidden": 8,
    "w_rank": 3,
    "u_rank": 4,
}


def test_build_and_round_trip():
    m = build_model(CONFIG)
    assert isinstance(m, FastGRNNLM) and isinstance(m.rnn.cell, FastGRNNCell)
    assert m(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 13)
    d = model_config(m)
    assert {k: d[k] for k in CONFIG} == CONFIG
    assert model_config(build_model(d)) == d
    fast = build_model({**CONFIG, "cell": "fastrnn", "w_rank": None})
    assert isinstance(fast.rnn.cell, FastRNNCell) and fast.rnn.cell.w_rank is None


def test_decode_step_matches_forward():
    torch.manual_seed(0)
    m = build_model(CONFIG).eval()
    idx = torch.randint(0, 13, (3, 7))
    full = m(idx)
    state = m.init_state(3)
    first, state = m.decode_step(idx[:, :4], state)
    rest, _ = m.decode_step(idx[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, rtol=0, atol=1e-6)


def test_decode_step_rejects_wrong_batch():
    m = build_model(CONFIG)
    with pytest.raises(PrunekitError, match="for a state of batch size 2"):
        m.decode_step(torch.zeros(3, 1, dtype=torch.long), m.init_state(2))


def test_bad_config_names_the_key():
    with pytest.raises(PrunekitError) as err:
        build_model({**CONFIG, "cell": "lstm"})
    assert (
        str(err.value) == "model.cell='lstm' is not supported: choose one of 'fastgrnn', 'fastrnn'"
    )
    with pytest.raises(PrunekitError, match="model.gate_nl='hard' is not a nonlinearity"):
        build_model({**CONFIG, "gate_nl": "hard"})


def test_builtin_recipe_is_the_papers_ptb_shape():
    model = yaml.safe_load(builtin("fastgrnn_lm").read_text())["model"]
    assert (model["d_hidden"], model["w_rank"], model["u_rank"], model["gate_nl"]) == (
        256,
        64,
        64,
        "sigmoid",
    )


def test_prunekit_train_trains_a_fastgrnn_lm(tiny_corpus, tiny_recipe, tmp_path, capsys):
    recipe = tiny_recipe(tiny_corpus, steps=8, eval_every=4)
    recipe["model"] = {"arch": "fastgrnn", "d_embed": 16, "d_hidden": 16, "w_rank": 4, "u_rank": 4}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", "--recipe", str(path), "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["recipe"]["model"]["arch"] == "fastgrnn"
    losses = [loss for _, loss in metrics["history"]["train"]]
    assert losses[-1] < losses[0]  # it learns
    assert 1 < metrics["test_ppl"] < 500  # vocab 500: better than uniform
    assert (tmp_path / "run" / "checkpoints" / "best").exists()
