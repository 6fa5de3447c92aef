import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models import RNNLM, TransformerLM, build_model, model_config

TRANSFORMER = {"arch": "transformer", "vocab_size": 11, "d_model": 8, "n_layer": 1, "n_head": 2}
RNN = {"arch": "rnn", "vocab_size": 11, "cell": "gru", "d_embed": 4, "d_hidden": 6}


def test_build_transformer():
    m = build_model(TRANSFORMER)
    assert isinstance(m, TransformerLM)
    assert m.config.d_model == 8 and m.config.d_ff == 2048
    assert m(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 11)


def test_build_rnn():
    m = build_model(RNN)
    assert isinstance(m, RNNLM) and isinstance(m.rnn, nn.GRU)


@pytest.mark.parametrize("config", [TRANSFORMER, RNN])
def test_model_config_round_trip(config):
    d = model_config(build_model(config))
    assert d["arch"] == config["arch"]
    assert {k: d[k] for k in config} == config
    assert model_config(build_model(d)) == d


def test_build_does_not_modify_input():
    config = dict(TRANSFORMER)
    build_model(config)
    assert config == TRANSFORMER


def test_missing_arch():
    with pytest.raises(PrunekitError) as err:
        build_model({"vocab_size": 11})
    assert str(err.value) == (
        "model.arch is missing: set model.arch to one of 'transformer', 'rnn', 'fastgrnn', 'kws', 'ctc'"
    )


def test_unknown_arch():
    with pytest.raises(PrunekitError) as err:
        build_model({"arch": "conformer", "vocab_size": 11})
    assert str(err.value) == (
        "model.arch='conformer' is not supported: choose one of 'transformer', 'rnn', 'fastgrnn', 'kws', 'ctc'"
    )


def test_unknown_field():
    with pytest.raises(PrunekitError) as err:
        build_model({**RNN, "hidden": 3})
    assert str(err.value) == (
        "unknown key model.hidden for model.arch='rnn': allowed keys are vocab_size, cell, "
        "d_embed, d_hidden, n_layer, dropout, tie_embeddings"
    )


def test_mistyped_field():
    with pytest.raises(PrunekitError) as err:
        build_model({**TRANSFORMER, "d_model": "8"})
    assert str(err.value) == "model.d_model='8' must be an integer >= 1: set e.g. model.d_model=512"


def test_missing_required_field():
    with pytest.raises(PrunekitError) as err:
        build_model({"arch": "transformer"})
    assert str(err.value) == "model.vocab_size is missing: set model.vocab_size in the model config"


def test_model_config_of_foreign_model():
    with pytest.raises(PrunekitError, match="model_config got a Linear"):
        model_config(nn.Linear(2, 2))
