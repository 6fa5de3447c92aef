import pytest
import torch
from torch import nn

from prunekit.asr.units import CharUnits
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.models import AcousticConfig, CTCAcousticModel, build_model, model_config
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state, save_checkpoint

SMALL = {"arch": "ctc", "n_mels": 12, "conv_channels": 3, "d_input": 10, "d_hidden": 8}
SMALL |= {"n_layer": 2, "dropout": 0.0}
VARIANTS = {
    "bigru": {},
    "bilstm": {"cell": "lstm"},
    "bigru-lookahead": {"lookahead": 1},
    "stream-gru": {"streaming": True},
    "stream-lstm": {"streaming": True, "cell": "lstm", "lookahead": 0},
}


def _model(**kw) -> CTCAcousticModel:
    torch.manual_seed(0)
    return build_model({**SMALL, **kw}).eval()


def test_registry_builds_and_records_the_ctc_model():
    m = build_model({"arch": "ctc"})
    assert isinstance(m, CTCAcousticModel)
    assert isinstance(m.rnn, nn.GRU) and m.rnn.bidirectional and m.rnn.num_layers == 3
    assert m.head.out_features == CharUnits().size == 29
    d = model_config(m)
    assert d["arch"] == "ctc" and d["d_hidden"] == 256 and d["lookahead"] is None
    assert model_config(build_model(d)) == d


def test_streaming_variant_is_unidirectional_with_default_lookahead():
    m = _model(streaming=True)
    assert not m.rnn.bidirectional and m.frames_ahead == 2
    assert m.input.in_features == 3 * m.subsample.out_features
    assert m.head.in_features == 8


@pytest.mark.parametrize("T,expected", [(1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (101, 26)])
def test_output_length_is_ceil_of_a_quarter(T, expected):
    log_probs, out_len = _model()(torch.randn(1, T, 12), torch.tensor([T]))
    assert log_probs.shape == (1, expected, 29) and out_len.tolist() == [expected]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(1, expected))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padded_batch_equals_each_utterance_alone(variant):
    m = _model(**VARIANTS[variant])
    g = torch.Generator().manual_seed(1)
    lengths = [37, 9, 23, 1]
    utts = [torch.randn(n, 12, generator=g) for n in lengths]
    batch = torch.full((4, 37, 12), 7.0)  # padding values must not matter
    for j, u in enumerate(utts):
        batch[j, : u.shape[0]] = u
    log_probs, out_len = m(batch, torch.tensor(lengths))
    for j, u in enumerate(utts):
        alone, n = m(u[None], torch.tensor([u.shape[0]]))
        assert int(out_len[j]) == int(n[0])
        assert torch.allclose(log_probs[j, : int(n[0])], alone[0], atol=1e-5), variant


@pytest.mark.parametrize(
    "kw", [{"streaming": True}, {"streaming": True, "cell": "lstm", "lookahead": 0}]
)
@pytest.mark.parametrize("chunks", [[1] * 45, [5, 0, 3, 17, 2, 18], [45]])
def test_streaming_steps_equal_the_whole_utterance(kw, chunks):
    m = _model(**kw)
    x = torch.randn(2, 45, 12, generator=torch.Generator().manual_seed(2))
    whole, _ = m(x, torch.tensor([45, 45]))
    state, outs, start = m.init_stream(2), [], 0
    for n in chunks:
        out, state = m.step(x[:, start : start + n], state)
        outs.append(out)
        start += n
    out, state = m.step(x[:, :0], state, final=True)
    outs.append(out)
    assert state.frames_in == 45
    got = torch.cat(outs, dim=1)
    assert got.shape == whole.shape
    assert torch.allclose(got, whole, atol=1e-5)


def test_one_step_per_10ms_frame_emits_once_every_four_frames():
    m = _model(streaming=True, lookahead=1)
    state, emitted = m.init_stream(1), []
    for _ in range(16):
        out, state = m.step(torch.randn(1, 1, 12), state)
        emitted.append(out.shape[1])
    # conv frame t is complete at input frame 4t; with 1 frame of lookahead it waits for t + 1
    assert emitted == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]


def test_bidirectional_model_refuses_to_stream():
    with pytest.raises(PrunekitError) as err:
        _model().init_stream(1)
    assert str(err.value) == (
        "step() needs a streaming acoustic model: build it with model.streaming=true "
        "(a bidirectional RNN needs the whole utterance)"
    )


def test_bad_inputs_name_the_fix():
    m = _model()
    with pytest.raises(PrunekitError) as err:
        m(torch.randn(2, 10, 80), torch.tensor([10, 10]))
    assert str(err.value) == (
        "acoustic model got features of shape (2, 10, 80): pass (batch, frames, 12) log-mel "
        "features, as the model was built for n_mels=12"
    )
    with pytest.raises(PrunekitError) as err:
        m(torch.randn(2, 10, 12), torch.tensor([10, 0]))
    assert str(err.value) == (
        "acoustic model got lengths [10, 0] for features of shape (2, 10, 12): pass one "
        "length in [1, frames] per utterance"
    )
    with pytest.raises(PrunekitError) as err:
        build_model({**SMALL, "cell": "rnn"})
    assert str(err.value) == "model.cell='rnn' is not supported: choose one of 'gru', 'lstm'"
    with pytest.raises(PrunekitError) as err:
        build_model({**SMALL, "lookahead": -1})
    assert (
        str(err.value) == "model.lookahead=-1 must be an integer >= 0: set e.g. model.lookahead=2"
    )


def test_feature_stats_normalize_inside_the_model_and_travel_with_checkpoints(tmp_path):
    m = _model()
    x = 3.0 + 2.0 * torch.randn(1, 20, 12)
    before, _ = m(x, torch.tensor([20]))
    m.set_feature_stats(torch.full((12,), 3.0), torch.full((12,), 2.0))
    after, _ = m(x, torch.tensor([20]))
    assert not torch.allclose(before, after)
    assert torch.allclose(m.normalize(x), (x - 3.0) / 2.0)
    save_checkpoint(tmp_path / "ck", m, {"model_config": model_config(m)})
    rebuilt = build_model(read_checkpoint_state(tmp_path / "ck")["state"]["model_config"]).eval()
    load_checkpoint(tmp_path / "ck", rebuilt)
    again, _ = rebuilt(x, torch.tensor([20]))
    assert torch.equal(again, after)
    with pytest.raises(PrunekitError) as err:
        m.set_feature_stats(torch.zeros(80), torch.ones(80))
    assert str(err.value) == (
        "feature statistics of shape (80,) do not fit a model with n_mels=12: compute them on "
        "features with that many mels"
    )


def test_flops_count_the_convolutions_and_the_recurrence():
    m = build_model({"arch": "ctc"})
    c = AcousticConfig()
    rnn = 0
    for layer in range(c.n_layer):
        d_in = c.d_input if layer == 0 else 2 * c.d_hidden
        rnn += 2 * (2 * 3 * c.d_hidden * (d_in + c.d_hidden) + 8 * c.d_hidden + 2 * 3 * c.d_hidden)
    conv1 = 2 * 40 * 32 * (2 * 9 * 1 + 1)  # two conv1 frames per output frame, 40 mel positions
    conv2 = 20 * 32 * (2 * 9 * 32 + 1)
    linear = 2 * 640 * 256 + 256 + 2 * 512 * 29 + 29
    assert flops_per_token(m, 1) == rnn + conv1 + conv2 + linear
