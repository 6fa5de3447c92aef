import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export import DenseLinear, OneDnnOffGRU, OneDnnOffLSTM, choose_linears, fastest_dense
from prunekit.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig

V = 23


def tiny_transformer() -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerLMConfig(
        vocab_size=V, d_model=16, n_layer=2, n_head=2, d_ff=32, dropout=0.0, max_rel_pos=4
    )
    return TransformerLM(cfg).eval()


def tiny_rnn(cell: str, **kw) -> RNNLM:
    torch.manual_seed(0)
    cfg = RNNLMConfig(vocab_size=V, cell=cell, d_embed=8, d_hidden=12, n_layer=2, dropout=0.0, **kw)
    return RNNLM(cfg).eval()


def tokens(B=2, T=7) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))


def assert_same_lm(a: nn.Module, b: nn.Module) -> None:
    x = tokens()
    with torch.inference_mode():
        torch.testing.assert_close(b(x), a(x), atol=1e-5, rtol=0)
        sa, sb = a.init_state(2), b.init_state(2)
        for chunk in (x[:, :4], x[:, 4:5], x[:, 5:6], x[:, 6:]):
            la, sa = a.decode_step(chunk, sa)
            lb, sb = b.decode_step(chunk, sb)
            torch.testing.assert_close(lb, la, atol=1e-5, rtol=0)


def test_transformer_linears_become_dense_linear():
    model = tiny_transformer()
    fast = fastest_dense(model, rnn_onednn=False)
    assert not any(type(m) is nn.Linear for m in fast.modules())
    assert isinstance(fast.blocks[1].attn.q_proj, DenseLinear)
    assert isinstance(fast.lm_head, DenseLinear)
    assert type(model.lm_head) is nn.Linear  # the original is untouched
    assert_same_lm(model, fast)
    assert flops_per_token(fast, 5) == flops_per_token(model, 5)


@pytest.mark.parametrize("layout", ["transposed", "rows"])
def test_dense_layouts(layout):
    model = tiny_transformer()
    fast = fastest_dense(model, dense_layout=layout, rnn_onednn=False)
    layers = [m for m in fast.modules() if isinstance(m, DenseLinear)]
    assert len(layers) == 2 * 4 + 2 * 2 + 1
    assert all(m.transposed == (layout == "transposed") for m in layers)
    assert_same_lm(model, fast)


def test_unknown_layout_is_a_user_error():
    with pytest.raises(PrunekitError):
        fastest_dense(tiny_transformer(), dense_layout="csc")


def test_tied_embeddings_still_match():
    torch.manual_seed(0)
    cfg = TransformerLMConfig(
        vocab_size=V, d_model=16, n_layer=1, n_head=2, d_ff=32, dropout=0.0, tie_embeddings=True
    )
    model = TransformerLM(cfg).eval()
    assert_same_lm(model, fastest_dense(model))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("onednn", [False, True, None])
def test_rnn_lm_matches(cell, onednn):
    model = tiny_rnn(cell)
    fast = fastest_dense(model, rnn_onednn=onednn, repeats=3)
    off_cls = OneDnnOffLSTM if cell == "lstm" else OneDnnOffGRU
    if onednn is False:
        assert isinstance(fast.rnn, off_cls)
    if onednn is True:
        assert type(fast.rnn) is type(model.rnn)
    assert isinstance(fast.rnn, nn.LSTM if cell == "lstm" else nn.GRU)
    assert isinstance(fast.lm_head, DenseLinear)
    assert_same_lm(model, fast)
    assert flops_per_token(fast, 1) == flops_per_token(model, 1)


def test_tied_rnn_with_projection_matches():
    model = tiny_rnn("lstm", tie_embeddings=True)
    assert model.proj is not None
    fast = fastest_dense(model, rnn_onednn=False)
    assert isinstance(fast.proj, DenseLinear)
    assert_same_lm(model, fast)


class _KeepMask(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def test_masked_weights_are_baked_in():
    model = tiny_rnn("lstm")
    g = torch.Generator().manual_seed(3)
    parametrize.register_parametrization(
        model.lm_head,
        "weight",
        _KeepMask(torch.rand(model.lm_head.weight.shape, generator=g) > 0.5),
    )
    fast = fastest_dense(model, rnn_onednn=False)
    assert isinstance(fast.lm_head, DenseLinear)
    assert torch.equal(fast.lm_head.weight == 0, model.lm_head.weight == 0)
    assert_same_lm(model, fast)


def test_choose_linears_times_only_pruned_layers():
    model = tiny_transformer()
    with torch.no_grad():
        w = model.blocks[0].ffn.fc_in.weight
        w[torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) < 0.9] = 0.0
    fast, records = choose_linears(model, repeats=3, rnn_onednn=False)
    assert list(records) == ["blocks.0.ffn.fc_in"]
    assert records["blocks.0.ffn.fc_in"]["kind"] in ("dense", "sparse")
    assert_same_lm(model, fast)
