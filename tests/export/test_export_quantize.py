import pytest
import torch
import torch.ao.nn.quantized.dynamic as qd
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.eval.size import size_report
from prunekit.export import (
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    QuantizedRNNLM,
    SparseLinear,
    compact_size_report,
    fastest_dense,
    quantize_int8,
    torch_dynamic_int8,
)
from prunekit.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig

V = 23


def tiny_transformer() -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerLMConfig(
        vocab_size=V, d_model=32, n_layer=2, n_head=2, d_ff=64, dropout=0.0, max_rel_pos=4
    )
    return TransformerLM(cfg).eval()


def tiny_rnn(cell: str) -> RNNLM:
    torch.manual_seed(0)
    cfg = RNNLMConfig(vocab_size=V, cell=cell, d_embed=16, d_hidden=24, n_layer=2, dropout=0.0)
    return RNNLM(cfg).eval()


def tokens(B=2, T=7) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))


def assert_close_to_scale(model: nn.Module, q: nn.Module, rel=0.05) -> None:
    """Full forward and incremental decoding of q within rel * max|logits| of model."""
    x = tokens()
    with torch.inference_mode():
        ref = model(x)
        assert (q(x) - ref).abs().max() <= rel * ref.abs().max()
        state = q.init_state(2)
        out = []
        for t in range(x.size(1)):
            logits, state = q.decode_step(x[:, t : t + 1], state)
            out.append(logits)
        assert (torch.cat(out, 1) - ref).abs().max() <= rel * ref.abs().max()


def pruned_lowrank_transformer() -> TransformerLM:
    """ffn.fc_in of block 0 factorized to rank 4, fc_out of block 1 80% pruned."""
    model = tiny_transformer()
    model.blocks[0].ffn.fc_in = LowRankLinear.from_linear(model.blocks[0].ffn.fc_in, 4)
    with torch.no_grad():
        w = model.blocks[1].ffn.fc_out.weight
        w[torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) < 0.8] = 0.0
    return model


def test_quantize_keeps_rank_and_zeros():
    model = pruned_lowrank_transformer()
    q = quantize_int8(model)
    low = q.blocks[0].ffn.fc_in
    assert isinstance(low, Int8LowRankLinear) and low.rank == 4
    assert low.first.weight().shape == (4, 32) and low.second.weight().shape == (64, 4)
    fc_out = q.blocks[1].ffn.fc_out
    assert isinstance(fc_out, Int8Linear)
    pruned = model.blocks[1].ffn.fc_out.weight == 0
    assert pruned.any() and (fc_out.dequantized_weight()[pruned] == 0).all()
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert isinstance(model.blocks[0].ffn.fc_in, LowRankLinear)  # original untouched
    assert flops_per_token(q, 4) == flops_per_token(model, 4)
    assert_close_to_scale(model, q)


def test_quantize_composes_with_fastest_dense():
    model = tiny_transformer()
    q = quantize_int8(fastest_dense(model))
    assert isinstance(q.lm_head, Int8Linear)
    assert_close_to_scale(model, q)


@pytest.mark.parametrize("policy", ["keep", "int8", "fastest"])
def test_sparse_layer_policy(policy):
    model = tiny_transformer()
    with torch.no_grad():
        w = model.blocks[0].attn.v_proj.weight
        w[torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) < 0.9] = 0.0
    model.blocks[0].attn.v_proj = SparseLinear.from_linear(model.blocks[0].attn.v_proj)
    q = quantize_int8(model, sparse=policy, repeats=3)
    layer = q.blocks[0].attn.v_proj
    expected = {"keep": (SparseLinear,), "int8": (Int8Linear,)}
    assert isinstance(layer, expected.get(policy, (SparseLinear, Int8Linear)))
    assert_close_to_scale(model, q)


def test_unknown_sparse_policy_is_a_user_error():
    with pytest.raises(PrunekitError):
        quantize_int8(tiny_transformer(), sparse="csr")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("quantizer", [quantize_int8, torch_dynamic_int8])
def test_rnn_lm_quantizes_and_decodes(cell, quantizer):
    model = tiny_rnn(cell)
    q = quantizer(model)
    assert isinstance(q, QuantizedRNNLM)
    assert isinstance(q.rnn, qd.LSTM if cell == "lstm" else qd.GRU)
    assert isinstance(q.lm_head, qd.Linear)
    assert_close_to_scale(model, q)
    assert flops_per_token(q, 1) == flops_per_token(model, 1)


def test_sizes_count_packed_int8_weights():
    model = tiny_rnn("lstm")
    dense = compact_size_report(model)
    assert dense == size_report(model)
    for q in (quantize_int8(model), torch_dynamic_int8(model)):
        report = compact_size_report(q)
        assert report["params"] == dense["params"]
        assert report["size_bytes"] < 0.5 * dense["size_bytes"]
        assert report["size_bytes"] > size_report(q)["size_bytes"]


def test_peer_baseline_leaves_compact_layers_alone():
    model = pruned_lowrank_transformer()
    q = torch_dynamic_int8(model)
    assert isinstance(q.blocks[0].ffn.fc_in, LowRankLinear)
    assert isinstance(q.blocks[1].ffn.fc_out, qd.Linear)
