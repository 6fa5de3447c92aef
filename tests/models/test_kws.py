"""`arch: kws`: a recurrent keyword classifier over (B, 99, 32) log-mel frames -> 12 classes."""

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models import build_model, model_config
from prunekit.models.fastgrnn import FastRNNLayer
from prunekit.models.kws import KWSClassifier, KWSConfig
from prunekit.prune import OneShot, PruneConfig, Pruner


@pytest.mark.parametrize("cell", ["fastgrnn", "fastrnn", "rnn", "gru", "lstm"])
def test_every_cell_classifies_a_clip_batch(cell):
    m = KWSClassifier(KWSConfig(cell=cell, d_hidden=12))
    assert m(torch.randn(3, 99, 32)).shape == (3, 12)
    assert isinstance(m.rnn, FastRNNLayer if cell.startswith("fast") else nn.RNNBase)


def test_the_last_state_decides():
    """Changing the last frame changes the logits; the head reads h_T."""
    torch.manual_seed(0)
    m = KWSClassifier(KWSConfig(cell="fastgrnn", d_hidden=8, n_in=4, n_classes=3)).eval()
    x = torch.randn(1, 10, 4)
    out, h = m.rnn(x)
    torch.testing.assert_close(m(x), m.head(h))
    y = x.clone()
    y[0, -1] += 1.0
    assert not torch.allclose(m(x), m(y))


def test_registry_round_trip():
    cfg = {"arch": "kws", "cell": "fastgrnn", "d_hidden": 10, "w_rank": 3, "u_rank": 4}
    m = build_model(cfg)
    assert isinstance(m, KWSClassifier)
    assert model_config(build_model(model_config(m))) == model_config(m)


def test_pruner_applies_to_every_cell():
    m = KWSClassifier(KWSConfig(cell="gru", d_hidden=12))
    Pruner(m, PruneConfig(schedule=OneShot(sparsity=0.5))).attach().step(0)
    assert m(torch.randn(2, 5, 32)).shape == (2, 12)
    assert float((m.rnn.weight_hh_l0 == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_config_errors_name_the_fix():
    with pytest.raises(PrunekitError) as err:
        KWSConfig(cell="gru", w_rank=4)
    assert str(err.value) == (
        "model.w_rank / model.u_rank apply to fastgrnn and fastrnn only, not cell='gru': remove them"
    )
    with pytest.raises(PrunekitError, match="is a keyword classifier, not a language model"):
        build_model({"arch": "kws", "vocab_size": 100})
    with pytest.raises(PrunekitError) as err:
        KWSClassifier(KWSConfig())(torch.randn(2, 99, 40))
    assert str(err.value) == (
        "KWSClassifier expects features of shape (batch, frames, 32), got (2, 99, 40): pass "
        "log-mel frames batch-first"
    )


@pytest.mark.parametrize("cell", ["fastgrnn", "gru"])
def test_the_classifier_starts_as_edgemls(cell):
    """EdgeML's FastTrainer starts FC and FCbias at N(0, 1); with nn.Linear's 10x smaller default
    the quantized low-rank FastGRNN's gradients explode in the dense stage (LSQ+Q: 44 % vs 92 %)."""
    torch.manual_seed(0)
    head = KWSClassifier(KWSConfig(cell=cell)).head  # 100 hidden -> 12 classes
    values = torch.cat([head.weight.detach().flatten(), head.bias.detach()])  # (1212,)
    assert 0.9 < float(values.std()) < 1.1
    assert abs(float(values.mean())) < 0.1
    torch_head = KWSClassifier(KWSConfig(cell=cell, head_init="torch")).head
    assert float(torch_head.weight.detach().abs().max()) <= 100**-0.5


def test_head_init_error_names_the_choices():
    with pytest.raises(PrunekitError) as err:
        KWSConfig(head_init="xavier")
    assert str(err.value) == (
        "model.head_init='xavier' is not supported: choose one of 'normal', 'torch'"
    )
