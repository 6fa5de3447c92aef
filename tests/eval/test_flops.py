import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.eval import flops
from prunekit.eval.flops import flops_breakdown, flops_per_token, register_flops
from prunekit.models import TransformerLM, TransformerLMConfig


def test_linear():
    assert flops_per_token(nn.Linear(10, 20), 1) == 2 * 10 * 20 + 20
    assert flops_per_token(nn.Linear(10, 20, bias=False), 1) == 400


def test_embedding_and_layer_norm():
    assert flops_per_token(nn.Embedding(100, 8), 1) == 0
    assert flops_per_token(nn.LayerNorm(8), 1) == 40


def test_lstm_single_layer():
    # 4 gates: 2*4*h*(in + h) matmuls + 2*4*h biases + 9*h gate arithmetic.
    assert flops_per_token(nn.LSTM(8, 16), 1) == 3072 + 128 + 144


def test_lstm_two_layers():
    assert flops_per_token(nn.LSTM(8, 16, num_layers=2), 1) == 3344 + (2 * 64 * 32 + 128 + 144)


def test_lstm_bidirectional_and_projection():
    layer1 = 2 * (2 * 64 * (8 + 16) + 128 + 144)
    layer2 = 2 * (2 * 64 * (32 + 16) + 128 + 144)
    assert flops_per_token(nn.LSTM(8, 16, 2, bidirectional=True), 1) == layer1 + layer2
    # proj_size=4: recurrent input is 4 wide, plus the 16 -> 4 projection.
    assert flops_per_token(nn.LSTM(8, 16, proj_size=4), 1) == 2 * 64 * 12 + 128 + 144 + 2 * 16 * 4


def test_gru_and_no_bias():
    assert flops_per_token(nn.GRU(8, 16), 1) == 2 * 48 * 24 + 96 + 8 * 16
    assert flops_per_token(nn.GRU(8, 16, bias=False), 1) == 2 * 48 * 24 + 8 * 16


def transformer_formula(V, d, L, H, dh, dff, k, ctx, tied=False):
    ln = 5 * d
    qkv = 3 * (2 * d * H * dh + H * dh)
    out = 2 * H * dh * d + d
    attention = 2 * ctx * H * dh + 2 * ctx * H * dh + 2 * H * dh * (k + 1)
    ffn = 2 * d * dff + dff + 2 * dff * d + d
    return L * (2 * ln + qkv + out + attention + ffn) + ln + 2 * d * V


def test_transformer_matches_formula():
    cfg = TransformerLMConfig(
        vocab_size=37, d_model=16, n_layer=2, n_head=2, d_ff=32, max_rel_pos=3
    )
    m = TransformerLM(cfg)
    assert flops_per_token(m, 5) == transformer_formula(37, 16, 2, 2, 8, 32, 3, 5) == 10896
    tied = TransformerLM(TransformerLMConfig(**{**cfg.to_dict(), "tie_embeddings": True}))
    assert flops_per_token(tied, 5) == 10896  # the output layer still runs
    breakdown = flops_breakdown(m, 5)
    assert breakdown == {"embed": 0, "drop": 0, "blocks": 9632, "ln_f": 80, "lm_head": 1184}
    assert sum(breakdown.values()) == flops_per_token(m, 5)


def test_attention_flops_follow_compressed_projections():
    m = TransformerLM(TransformerLMConfig(vocab_size=37, d_model=16, n_layer=1, n_head=4, d_ff=8))
    attn = m.blocks[0].attn
    before = flops_per_token(attn, 10)
    attn.q_proj, attn.k_proj, attn.v_proj = (nn.Linear(16, 8) for _ in range(3))
    attn.out_proj = nn.Linear(8, 16)
    assert attn.n_head == 2
    # Halving the heads halves everything in attention except the output bias adds (d = 16).
    assert flops_per_token(attn, 10) == (before - 16) // 2 + 16


class Compressed(nn.Module):
    """Holds a big dense layer but claims a fixed cost: its children must not be walked."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(100, 100)

    def flops_per_token(self, context_len: int) -> int:
        return 7 * context_len


def test_own_method_takes_precedence_over_children():
    model = nn.Sequential(Compressed(), nn.Linear(4, 2, bias=False))
    assert flops_per_token(model, 3) == 21 + 16
    assert flops_breakdown(model, 3) == {"0": 21, "1": 16}
    assert flops_breakdown(Compressed(), 3) == {"": 21}


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(3, 3)


class CustomChild(Custom):
    pass


def test_register_flops_applies_to_subclasses(monkeypatch):
    monkeypatch.setattr(flops, "_REGISTRY", dict(flops._REGISTRY))  # keep the registration local
    assert flops_per_token(Custom(), 1) == 2 * 9 + 3  # walked by default

    @register_flops(Custom)
    def _custom(module: nn.Module, context_len: int) -> int:
        return 1000 + context_len

    assert flops_per_token(Custom(), 2) == 1002
    assert flops_per_token(nn.Sequential(CustomChild(), nn.ReLU()), 2) == 1002


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_context_len_validation(bad):
    with pytest.raises(PrunekitError, match="must be an integer >= 1"):
        flops_per_token(nn.Linear(2, 2), bad)


def test_larger_context_costs_more():
    m = TransformerLM(TransformerLMConfig(vocab_size=10, d_model=8, n_layer=1, n_head=2, d_ff=8))
    assert flops_per_token(m, 2) - flops_per_token(m, 1) == 4 * 8
    with torch.no_grad():
        assert m(torch.zeros(1, 2, dtype=torch.long)).shape == (1, 2, 10)
