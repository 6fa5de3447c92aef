"""Scope: module types, patterns, output layer, positional embeddings, tied weights, errors."""

import logging

import pytest
import torch
from prune_standins import TinyGPT2, TinyRNNLM, TinyTransformerLM
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune import OneShot, PruneConfig, Pruner, ScopeConfig, resolve_scope


def _names(model, **kw):
    return [t.name for t in resolve_scope(model, ScopeConfig(**kw))]


def test_default_scope_transformer():
    names = _names(TinyTransformerLM(n_layer=1))
    assert names == [
        "embed.weight",
        "blocks.0.attn.q_proj.weight",
        "blocks.0.attn.k_proj.weight",
        "blocks.0.attn.v_proj.weight",
        "blocks.0.attn.out_proj.weight",
        "blocks.0.ffn.fc_in.weight",
        "blocks.0.ffn.fc_out.weight",
        "lm_head.weight",
    ]  # no biases, norms or rel_k


def test_rnn_weights_and_types():
    model = TinyRNNLM(layers=2)
    assert _names(model, module_types=["LSTM"]) == [
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.weight_ih_l1",
        "rnn.weight_hh_l1",
    ]
    assert _names(model, module_types=["Linear"]) == ["lm_head.weight"]


def test_positional_embeddings_are_skipped_unless_asked():
    model = TinyTransformerLM(n_layer=1)
    assert "blocks.0.attn.rel_k.weight" in _names(model, skip_positional=False)
    gpt = TinyGPT2(n_layer=1)
    assert "transformer.wpe.weight" not in _names(gpt)


def test_patterns_match_parameter_or_module_names():
    model = TinyTransformerLM(n_layer=2)
    assert _names(model, include=["blocks.1.ffn.*"]) == [
        "blocks.1.ffn.fc_in.weight",
        "blocks.1.ffn.fc_out.weight",
    ]
    assert _names(model, include=["lm_head"]) == ["lm_head.weight"]
    assert "embed.weight" not in _names(model, exclude=["embed"])
    assert not any("attn" in n for n in _names(model, exclude=["*.attn.*"]))


def test_exclude_output_lm_head_or_last_linear():
    assert "lm_head.weight" not in _names(TinyTransformerLM(), exclude_output=True)
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    assert _names(seq, exclude_output=True) == ["0.weight"]


def test_exclude_output_with_tied_embedding_warns(caplog):
    model = TinyTransformerLM(tie=True, n_layer=1)
    with caplog.at_level(logging.WARNING):
        names = _names(model, exclude_output=True)
    assert "embed.weight" not in names and "lm_head.weight" not in names
    assert "exclude_output also skips embed.weight, which is tied to lm_head" in caplog.text


def test_tied_weights_are_one_target():
    targets = resolve_scope(TinyGPT2(n_layer=1), ScopeConfig())
    wte = next(t for t in targets if t.name == "transformer.wte.weight")
    assert [a.name for a in wte.aliases] == ["transformer.wte.weight", "lm_head.weight"]
    assert wte.kind == "embedding" and wte.group_vocab
    assert not any(t.name == "lm_head.weight" for t in targets)
    conv = next(t for t in targets if t.name == "transformer.h.0.mlp.c_fc.weight")
    assert conv.kind == "conv1d"


def _err(model, **kw):
    with pytest.raises(PrunekitError) as exc:
        resolve_scope(model, ScopeConfig(**kw))
    return str(exc.value)


def test_pattern_matching_nothing():
    msg = _err(TinyRNNLM(layers=1), include=["decoder.*"])
    assert msg == (
        "scope.include pattern 'decoder.*' matches no parameter: available names include "
        "embed.weight, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, ..."
    )
    msg = _err(TinyRNNLM(layers=1), exclude=["nope"])
    assert msg.startswith("scope.exclude pattern 'nope' matches no parameter: available names")


def test_conflicting_scopes():
    assert _err(TinyRNNLM(layers=1), include=["rnn.*"], exclude=["rnn.weight_hh_l0"]) == (
        "conflicting scopes: 'rnn.weight_hh_l0' matches include 'rnn.*' and exclude "
        "'rnn.weight_hh_l0': remove it from one of them"
    )


def test_empty_scope():
    assert _err(TinyRNNLM(layers=1), include=["*.bias*"]) == (
        "empty pruning scope: no weight of module_types=['Linear', 'Embedding', 'LSTM', 'GRU', "
        "'Conv1D', 'Conv1d', 'Conv2d'] is left after include=['*.bias*'], exclude=[], exclude_output=False: "
        "widen the scope"
    )


def test_bad_scope_config_values():
    cases = [
        (
            {"module_types": ["LayerNorm"]},
            "scope.module_types has 'LayerNorm', which cannot be pruned: choose from Linear, "
            "Embedding, LSTM, GRU, RNN, Conv1D, Conv1d, Conv2d (biases and norms are never pruned)",
        ),
        (
            {"include": "blocks.*"},
            "scope.include='blocks.*' must be a list of strings, e.g. ['blocks.*']",
        ),
        ({"exclude": [""]}, "scope.exclude=[''] must hold non-empty strings only"),
        ({"exclude_output": "yes"}, "scope.exclude_output='yes' must be true or false"),
    ]
    for kw, message in cases:
        with pytest.raises(PrunekitError) as exc:
            ScopeConfig(**kw)
        assert str(exc.value) == message


def test_scope_errors_come_before_training():
    model = TinyRNNLM(layers=1)
    cfg = PruneConfig(schedule=OneShot(sparsity=0.5), scope=ScopeConfig(include=["encoder"]))
    with pytest.raises(PrunekitError, match="matches no parameter"):
        Pruner(model, cfg).attach()
    assert isinstance(model.rnn.weight_ih_l0, torch.nn.Parameter)  # untouched
