"""The remaining PrunekitError messages, checked exactly."""

import pytest
import torch
from prune_standins import TinyRNNLM
from torch import nn
from torch.nn.utils import parametrize

from prunekit.errors import PrunekitError
from prunekit.prune import (
    Cubic,
    FactorizedEmbedding,
    Mask,
    OneShot,
    PruneConfig,
    Pruner,
    attach_mask,
    attach_masks_from_state_dict,
    finalize,
    prune_,
)


def _raises(fn) -> str:
    with pytest.raises(PrunekitError) as exc:
        fn()
    return str(exc.value)


def test_serialisation_errors():
    assert _raises(lambda: Cubic.from_dict({"_type": "Cubic", "_version": 1, "_data": 3})) == (
        "Cubic _data=3 must be a dict of fields"
    )
    bad = {"_type": "Cubic", "_version": 1, "_data": {"s_f": 0.5, "dt": 1, "n": 1, "x": 0}}
    assert _raises(lambda: Cubic.from_dict(bad)) == (
        "bad Cubic fields ['dt', 'n', 's_f', 'x']: Cubic.__init__() got an unexpected keyword "
        "argument 'x'"
    )


def test_mask_errors():
    lin = nn.Linear(3, 2)
    assert _raises(lambda: attach_mask(lin, "weight", Mask((2, 2)))) == (
        "shared mask of shape (2, 2) does not fit weight of shape (2, 3): tied tensors must have "
        "one shape"
    )
    model = nn.Sequential(nn.Linear(3, 2))
    attach_mask(model[0], "weight")
    parametrize.register_parametrization(model[0], "weight", nn.Identity())
    assert _raises(lambda: finalize(model)) == (
        "0.weight has other parametrizations besides the pruning mask: remove them first"
    )
    sd = {"fc.parametrizations.weight.0.mask": torch.ones(2, 3, dtype=torch.bool)}
    assert _raises(lambda: attach_masks_from_state_dict(nn.Sequential(nn.Linear(3, 2)), sd)) == (
        "checkpoint key 'fc.parametrizations.weight.0.mask' has no matching tensor fc.weight in "
        "the model: build the model with the checkpoint's architecture"
    )


def test_factorized_errors():
    emb = nn.Embedding(5, 3, max_norm=1.0)
    assert _raises(lambda: FactorizedEmbedding.from_embedding(emb)) == (
        "method=factorized cannot factorize an nn.Embedding with max_norm or sparse=True: "
        "exclude it from the scope"
    )
    cfg = PruneConfig(method="factorized", schedule=OneShot(sparsity=0.5))
    assert _raises(lambda: Pruner(nn.Linear(3, 3), cfg).attach()) == (
        "method=factorized cannot replace the model itself: wrap it in a parent module"
    )
    model = nn.Sequential(nn.Linear(3, 3))
    prune_(model, PruneConfig(schedule=OneShot(sparsity=0.5)))
    assert _raises(lambda: Pruner(model, cfg).attach()) == (
        "'0.weight' already has a pruning mask: factorize a model without masks (call "
        "prunekit.prune.finalize(model) first)"
    )


def test_consumer_key_must_be_an_rnn():
    cfg = PruneConfig(
        method="structured",
        method_args={"consumers": {"lstm": "lm_head"}},
        schedule=OneShot(sparsity=0.5),
    )
    assert _raises(lambda: Pruner(TinyRNNLM(), cfg).attach()) == (
        "method_args consumers has 'lstm', which is not an RNN, conv or embedding module of the "
        "model: use one of ['embed', 'rnn']"
    )


def test_pruner_state_missing_tensor():
    cfg = PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5))
    a = Pruner(nn.Sequential(nn.Linear(3, 3)), cfg).attach()
    state = a.state_dict()
    del state["tensors"]["stats/0.weight/taylor_sum"]
    b = Pruner(nn.Sequential(nn.Linear(3, 3)), cfg).attach()
    assert _raises(lambda: b.load_state_dict(state)) == (
        "pruner state lacks 'stats/0.weight/taylor_sum' of shape (3, 3)"
    )


def test_pruner_needs_a_config():
    assert _raises(lambda: Pruner(nn.Linear(2, 2), {"criterion": "taylor"})) == (  # type: ignore[arg-type]
        "config must be a PruneConfig, got dict"
    )
