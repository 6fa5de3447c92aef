import math

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models import TransformerLM, TransformerLMConfig
from prunekit.models.transformer_lm import CausalSelfAttention

V = 37


def tiny(**overrides) -> TransformerLM:
    kw = dict(vocab_size=V, d_model=16, n_layer=2, n_head=2, d_ff=32, max_rel_pos=3, dropout=0.0)
    kw.update(overrides)
    torch.manual_seed(0)
    return TransformerLM(TransformerLMConfig(**kw)).eval()


def tokens(B: int = 2, T: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_forward_shape_and_attribute_names():
    m = tiny()
    assert m(tokens(3, 5)).shape == (3, 5, V)
    names = {n for n, _ in m.named_modules()}
    for n in ["embed", "drop", "ln_f", "lm_head", "blocks.1.ln_attn", "blocks.1.ln_ffn"]:
        assert n in names
    for n in ["q_proj", "k_proj", "v_proj", "out_proj", "rel_k"]:
        assert f"blocks.0.attn.{n}" in names
    assert "blocks.0.ffn.fc_in" in names and "blocks.0.ffn.fc_out" in names
    attn = m.blocks[0].attn
    assert (attn.n_head, attn.d_head) == (2, 8)
    assert attn.rel_k.weight.shape == (4, 8)
    assert m.lm_head.bias is None


def test_causal():
    m = tiny()
    x = tokens(1, 8)
    y = x.clone()
    y[0, 5] = (y[0, 5] + 1) % V
    with torch.no_grad():
        a, b = m(x), m(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_relative_positions_are_the_only_order_signal():
    # One layer: permuting the prefix keeps the last token's bag of keys and values, so only the
    # relative positions can tell the two orders apart.
    m = tiny(n_layer=1)
    x = tokens(1, 8)
    perm = torch.cat([torch.tensor([3, 0, 6, 1, 5, 2, 4]), torch.tensor([7])])
    with torch.no_grad():
        last, last_perm = m(x)[:, -1], m(x[:, perm])[:, -1]
        assert not torch.allclose(last, last_perm, atol=1e-5)
        for block in m.blocks:
            block.attn.rel_k.weight.zero_()
        torch.testing.assert_close(m(x)[:, -1], m(x[:, perm])[:, -1])


def reference_attention(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """e_ij = q_i . (k_j + a_{min(i - j, k)}) / sqrt(d), with an explicit loop over (i, j)."""
    B, T, _ = x.shape
    H, D, k = attn.n_head, attn.d_head, attn.rel_k.num_embeddings - 1
    q = attn.q_proj(x).view(B, T, H, D)
    kk = attn.k_proj(x).view(B, T, H, D)
    v = attn.v_proj(x).view(B, T, H, D)
    out = torch.zeros(B, T, H, D)
    for i in range(T):
        keys = torch.stack([kk[:, j] + attn.rel_k.weight[min(i - j, k)] for j in range(i + 1)], 1)
        e = torch.einsum("bhd,bjhd->bhj", q[:, i], keys) / math.sqrt(D)
        out[:, i] = torch.einsum("bhj,bjhd->bhd", e.softmax(-1), v[:, : i + 1])
    return attn.out_proj(out.reshape(B, T, H * D))


def test_attention_matches_shaw_reference_with_clipping():
    torch.manual_seed(0)
    attn = CausalSelfAttention(d_model=12, n_head=3, d_head=4, max_rel_pos=2, dropout=0.0).eval()
    x = torch.randn(2, 7, 12)
    with torch.no_grad():
        y, _ = attn(x)
        torch.testing.assert_close(y, reference_attention(attn, x), atol=1e-5, rtol=1e-5)
        # Distances 2..6 all use row k = 2: changing it changes token 6, not tokens 0 and 1.
        attn.rel_k.weight[2] += 1.0
        y2, _ = attn(x)
    torch.testing.assert_close(y[:, :2], y2[:, :2])
    assert not torch.allclose(y[:, 6], y2[:, 6])


def test_gradients_match_shaw_reference():
    # The relative term enters through SDPA's float mask: its gradient must reach rel_k and q.
    torch.manual_seed(0)
    attn = CausalSelfAttention(d_model=12, n_head=3, d_head=4, max_rel_pos=2, dropout=0.0)
    x = torch.randn(2, 6, 12)
    g = torch.randn(2, 6, 12)
    (attn(x)[0] * g).sum().backward()
    grads = {n: p.grad.clone() for n, p in attn.named_parameters()}
    attn.zero_grad()
    (reference_attention(attn, x) * g).sum().backward()
    for n, p in attn.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)
    assert grads["rel_k.weight"].abs().sum() > 0


@pytest.mark.parametrize("chunks", [[1] * 8, [3, 5], [8], [2, 1, 4, 1]])
def test_decode_step_matches_forward(chunks):
    m = tiny(n_layer=3)
    x = tokens(2, 8)
    with torch.no_grad():
        full = m(x)
        state = m.init_state(2)
        outs, t = [], 0
        for n in chunks:
            logits, state = m.decode_step(x[:, t : t + n], state)
            outs.append(logits)
            t += n
    assert state.pos == 8
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_decode_step_does_not_modify_input_state():
    m = tiny()
    x = tokens(1, 4)
    with torch.no_grad():
        _, s = m.decode_step(x[:, :3], m.init_state(1))
        a, _ = m.decode_step(x[:, 3:], s)
        b, _ = m.decode_step(x[:, 3:], s)
    assert s.pos == 3
    torch.testing.assert_close(a, b)


def test_decode_step_rejects_wrong_batch():
    m = tiny()
    with pytest.raises(PrunekitError, match="batch size 2"):
        m.decode_step(tokens(3, 1), m.init_state(2))


def test_tied_embeddings_share_storage():
    m = tiny(tie_embeddings=True)
    assert m.lm_head.weight is m.embed.weight
    assert m.lm_head.weight.data_ptr() == m.embed.weight.data_ptr()
    untied = tiny()
    n_tied = sum(p.numel() for p in m.parameters())
    assert n_tied == sum(p.numel() for p in untied.parameters()) - V * 16


def test_fewer_heads_after_replacing_projections():
    m = tiny(n_layer=2, n_head=4)  # d_head = 4
    attn = m.blocks[0].attn
    attn.q_proj, attn.k_proj, attn.v_proj = (nn.Linear(16, 2 * 4) for _ in range(3))
    attn.out_proj = nn.Linear(2 * 4, 16)
    m.blocks[1].ffn.fc_in = nn.Linear(16, 5)
    m.blocks[1].ffn.fc_out = nn.Linear(5, 16)
    assert attn.n_head == 2 and m.blocks[1].attn.n_head == 4
    x = tokens(2, 6)
    with torch.no_grad():
        full = m(x)
        state = m.init_state(2)
        steps = []
        for t in range(6):
            logits, state = m.decode_step(x[:, t : t + 1], state)
            steps.append(logits)
    assert full.shape == (2, 6, V)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_gpt2_init():
    m = tiny(d_model=64, n_head=4, d_ff=256, n_layer=8)
    std = 0.02 / math.sqrt(16)
    assert m.blocks[0].attn.out_proj.weight.std().item() == pytest.approx(std, rel=0.1)
    assert m.blocks[0].ffn.fc_out.weight.std().item() == pytest.approx(std, rel=0.1)
    assert m.blocks[0].attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert m.blocks[0].attn.q_proj.bias.abs().sum().item() == 0.0


def test_dropout_only_in_training():
    m = tiny(dropout=0.5)
    x = tokens(1, 6)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x))
        m.train()
        assert not torch.allclose(m(x), m(x))


def test_relu_activation_and_explicit_d_head():
    m = tiny(activation="relu", n_head=3, d_head=5)
    assert isinstance(m.blocks[0].ffn.act, nn.ReLU)
    assert m.blocks[0].attn.q_proj.out_features == 15
    assert m(tokens(1, 4)).shape == (1, 4, V)


def test_config_round_trip():
    c = TransformerLMConfig(vocab_size=10, d_head=4, tie_embeddings=True)
    assert TransformerLMConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["d_head"] == 4
    assert TransformerLMConfig(vocab_size=10).head_dim == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(d_model=128, n_head=3),
            "model.n_head=3 must divide model.d_model=128: "
            "pick a divisor of d_model or set model.d_head explicitly",
        ),
        (dict(d_model=0), "model.d_model=0 must be an integer >= 1: set e.g. model.d_model=512"),
        (dict(n_layer="6"), "model.n_layer='6' must be an integer >= 1: set e.g. model.n_layer=6"),
        (dict(d_ff=True), "model.d_ff=True must be an integer >= 1: set e.g. model.d_ff=2048"),
        (
            dict(dropout=1.0),
            "model.dropout=1.0 must be a number in [0, 1): set e.g. model.dropout=0.1",
        ),
        (
            dict(activation="swish"),
            "model.activation='swish' is not supported: choose one of 'gelu', 'relu'",
        ),
        (
            dict(tie_embeddings="yes"),
            "model.tie_embeddings='yes' must be true or false: set model.tie_embeddings=false",
        ),
        (
            dict(max_rel_pos=0),
            "model.max_rel_pos=0 must be an integer >= 1: set e.g. model.max_rel_pos=64",
        ),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(PrunekitError) as err:
        TransformerLMConfig(vocab_size=10, **kwargs)
    assert str(err.value) == message


def test_from_dict_rejects_unknown_key():
    with pytest.raises(PrunekitError, match=r"unknown key model\.n_heads for model\.arch="):
        TransformerLMConfig.from_dict({"vocab_size": 10, "n_heads": 4})
