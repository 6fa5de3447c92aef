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
