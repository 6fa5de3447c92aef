import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models import RNNLM, RNNLMConfig

V = 23


def tiny(**overrides) -> RNNLM:
    kw = dict(vocab_size=V, d_embed=8, d_hidden=12, n_layer=2, dropout=0.0)
    kw.update(overrides)
    torch.manual_seed(0)
    return RNNLM(RNNLMConfig(**kw)).eval()


def tokens(B: int = 2, T: int = 7) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_shapes_and_modules(cell):
    m = tiny(cell=cell)
    assert m(tokens(3, 5)).shape == (3, 5, V)
    assert isinstance(m.rnn, nn.LSTM if cell == "lstm" else nn.GRU)
    assert m.rnn.batch_first and m.rnn.num_layers == 2
    assert m.proj is None
    assert m.lm_head.in_features == 12 and m.lm_head.bias is not None


def test_causal():
    m = tiny()
    x = tokens(1, 6)
    y = x.clone()
    y[0, 4] = (y[0, 4] + 1) % V
    with torch.no_grad():
        a, b = m(x), m(y)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 4]])
def test_decode_step_matches_forward(cell, chunks):
    m = tiny(cell=cell, n_layer=3)
    x = tokens(2, 7)
    with torch.no_grad():
        full = m(x)
        state = m.init_state(2)
        outs, t = [], 0
        for n in chunks:
            logits, state = m.decode_step(x[:, t : t + n], state)
            outs.append(logits)
            t += n
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_init_state_shapes():
    h, c = tiny(cell="lstm").init_state(4)
    assert h.shape == c.shape == (2, 4, 12)
    assert tiny(cell="gru").init_state(4).shape == (2, 4, 12)


def test_decode_step_rejects_wrong_batch():
    m = tiny()
    with pytest.raises(PrunekitError, match="batch size 2"):
        m.decode_step(tokens(3, 1), m.init_state(2))


def test_tied_with_projection():
    m = tiny(tie_embeddings=True)
    assert isinstance(m.proj, nn.Linear) and m.proj.bias is None
    assert (m.proj.in_features, m.proj.out_features) == (12, 8)
    assert m.lm_head.weight is m.embed.weight
    assert m(tokens()).shape == (2, 7, V)


def test_tied_without_projection():
    m = tiny(tie_embeddings=True, d_hidden=8)
    assert m.proj is None
    assert m.lm_head.weight.data_ptr() == m.embed.weight.data_ptr()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_compact_copy_with_fewer_hidden_units(cell):
    m = tiny(cell=cell)
    rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
    m.rnn = rnn_cls(8, 5, num_layers=2, batch_first=True)
    m.lm_head = nn.Linear(5, V)
    x = tokens(2, 5)
    with torch.no_grad():
        full = m(x)
        state = m.init_state(2)
        steps = []
        for t in range(5):
            logits, state = m.decode_step(x[:, t : t + 1], state)
            steps.append(logits)
    assert full.shape == (2, 5, V)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_single_layer_has_no_inter_layer_dropout():
    assert tiny(n_layer=1, dropout=0.3).rnn.dropout == 0.0
    assert tiny(n_layer=2, dropout=0.3).rnn.dropout == 0.3


def test_config_round_trip():
    c = RNNLMConfig(vocab_size=10, cell="gru", tie_embeddings=True)
    assert RNNLMConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(cell="rnn"), "model.cell='rnn' is not supported: choose one of 'lstm', 'gru'"),
        (
            dict(d_hidden=-1),
            "model.d_hidden=-1 must be an integer >= 1: set e.g. model.d_hidden=512",
        ),
        (dict(n_layer=0), "model.n_layer=0 must be an integer >= 1: set e.g. model.n_layer=2"),
        (
            dict(dropout=-0.1),
            "model.dropout=-0.1 must be a number in [0, 1): set e.g. model.dropout=0.2",
        ),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(PrunekitError) as err:
        RNNLMConfig(vocab_size=10, **kwargs)
    assert str(err.value) == message
