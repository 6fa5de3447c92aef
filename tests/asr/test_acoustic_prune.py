"""The pruner and compact export apply to the CTC acoustic model, Conv2d front-end included."""

import pytest
import torch
from speech_standins import TINY_AM, speech_splits
from torch import nn

from prunekit.asr.batches import pad_features
from prunekit.asr.ctc_task import CTCTask
from prunekit.export.compact import compact
from prunekit.export.linear_rnn import LinearRNN
from prunekit.models import build_model
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_
from prunekit.prune.masks import mask_modules
from prunekit.train.distributed import World

RNN_ONLY = ScopeConfig(module_types=("GRU", "LSTM"))


@pytest.fixture(scope="module")
def splits():
    return speech_splits(n_train=12, n_dev=6)


def _model(**kw) -> nn.Module:
    torch.manual_seed(0)
    return build_model({**TINY_AM, **kw}).eval()


def _outputs(model: nn.Module, fs) -> torch.Tensor:
    feats, lengths = pad_features(fs, list(range(len(fs))))
    with torch.no_grad():
        log_probs, out_len = model(feats, lengths)
    mask = torch.arange(log_probs.shape[1]) < out_len[:, None]
    return log_probs[mask]  # (valid frames, V)


@pytest.mark.parametrize("kw", [{}, {"streaming": True}])
def test_unstructured_pruning_and_compact_keep_the_masked_outputs(splits, kw):
    model = _model(**kw)
    prune_(model, PruneConfig(schedule=OneShot(sparsity=0.6)))
    assert mask_modules(model)
    w = model.rnn.weight_hh_l1
    assert float((w == 0).float().mean()) == pytest.approx(0.6, abs=0.02)
    conv = model.subsample.conv2.weight  # convolutions are in the default scope too
    assert float((conv == 0).float().mean()) == pytest.approx(0.6, abs=0.02)
    masked = _outputs(model, splits["dev"])
    small, manifest = compact(model, repeats=2, sparse="csr")
    assert torch.allclose(_outputs(small, splits["dev"]), masked, atol=1e-4)
    if kw:  # a unidirectional RNN can run as CSR gate matrices
        assert isinstance(small.rnn, LinearRNN)
    assert manifest["model_config"]["arch"] == "ctc"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("streaming", [False, True])
def test_structured_rnn_units_all_gates_shrink_the_model_exactly(splits, cell, streaming):
    model = _model(cell=cell, streaming=streaming)
    cfg = PruneConfig(method="structured", schedule=OneShot(sparsity=0.5), scope=RNN_ONLY)
    prune_(model, cfg)
    masked = _outputs(model, splits["dev"])
    small, manifest = compact(model, repeats=2, sparse="dense")
    assert small.rnn.hidden_size == 16  # of 32 units per layer and direction
    gates = 3 if cell == "gru" else 4
    assert small.rnn.weight_hh_l0.shape == (gates * 16, 16)
    assert small.head.in_features == 16 * (1 if streaming else 2)
    record = next(r for r in manifest["structure"] if r["kind"] == "rnn_units")
    assert record["consumer"] == "head"
    assert torch.allclose(_outputs(small, splits["dev"]), masked, atol=1e-4)
    dense_params = sum(p.numel() for p in _model(cell=cell, streaming=streaming).parameters())
    assert sum(p.numel() for p in small.parameters()) < 0.6 * dense_params


def test_compact_streaming_model_still_steps(splits):
    model = _model(streaming=True)
    prune_(model, PruneConfig(method="structured", schedule=OneShot(sparsity=0.5), scope=RNN_ONLY))
    small, _ = compact(model, repeats=2, sparse="dense")
    x = splits["dev"][0][None]  # (1, T, F)
    whole, _ = small(x, torch.tensor([x.shape[1]]))
    state, outs = small.init_stream(1), []
    for t in range(x.shape[1]):
        out, state = small.step(x[:, t : t + 1], state)
        outs.append(out)
    outs.append(small.step(x[:, :0], state, final=True)[0])
    assert torch.allclose(torch.cat(outs, dim=1), whole, atol=1e-5)


def test_taylor_scores_come_from_the_ctc_loss(splits):
    task = CTCTask(splits["train"], splits["dev"], max_frames=400)
    calibration = [(task.batch(i, World()), None) for i in range(len(task))]

    def ctc_loss(model, batch, _):
        return task.loss(model, batch)

    cfg = PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5), scope=RNN_ONLY)
    taylor = prune_(_model(), cfg, calibration=calibration, loss_fn=ctc_loss)
    magnitude = prune_(_model(), PruneConfig(schedule=OneShot(sparsity=0.5), scope=RNN_ONLY))
    a, b = taylor.rnn.weight_ih_l0 == 0, magnitude.rnn.weight_ih_l0 == 0
    assert float(a.float().mean()) == pytest.approx(0.5, abs=0.01)
    assert not torch.equal(a, b)  # the data changed the choice


def test_structured_default_scope_prunes_linear_rows_and_rnn_units(splits):
    model = _model()
    scope = ScopeConfig(exclude_output=True)  # keep every output character
    prune_(model, PruneConfig(method="structured", schedule=OneShot(sparsity=0.5), scope=scope))
    assert bool((model.input.weight == 0).all(dim=1).any())  # rows of the front-end Linear
    assert not bool((model.head.weight == 0).all(dim=1).any())  # no output unit removed
    masked = _outputs(model, splits["dev"])
    small, _ = compact(model, repeats=2, sparse="dense")
    assert small.rnn.hidden_size == 16
    assert torch.allclose(_outputs(small, splits["dev"]), masked, atol=1e-4)


def test_a_compact_acoustic_model_saves_and_loads_without_a_model_object(splits, tmp_path):
    from prunekit.export import load_compact, save_compact

    model = _model()
    cfg = PruneConfig(method="structured", schedule=OneShot(sparsity=0.5), scope=RNN_ONLY)
    prune_(model, cfg)
    small, manifest = compact(model, repeats=2)
    save_compact(small, manifest, tmp_path / "am")
    loaded = load_compact(tmp_path / "am").eval()
    assert torch.equal(_outputs(loaded, splits["dev"]), _outputs(small, splits["dev"]))
