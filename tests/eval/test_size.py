import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from prunekit.eval.size import nonzero_param_count, param_count, size_bytes, size_report
from prunekit.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig


def tiny_transformer(tied: bool) -> TransformerLM:
    cfg = TransformerLMConfig(
        vocab_size=50, d_model=8, n_layer=1, n_head=2, d_ff=16, max_rel_pos=2, tie_embeddings=tied
    )
    return TransformerLM(cfg)


def test_param_count_linear():
    assert param_count(nn.Linear(10, 20)) == 220


def test_tied_counted_once():
    untied, tied = tiny_transformer(False), tiny_transformer(True)
    assert param_count(untied) - param_count(tied) == 50 * 8
    assert size_bytes(untied) - size_bytes(tied) == 50 * 8 * 4
    assert size_bytes(tied) == 4 * param_count(tied)
    rnn = RNNLM(RNNLMConfig(vocab_size=30, d_embed=4, d_hidden=6, n_layer=1, tie_embeddings=True))
    assert rnn.lm_head.weight is rnn.embed.weight
    assert param_count(rnn) == sum(p.numel() for p in set(rnn.parameters()))


def test_nonzero_after_zeroing_half():
    layer = nn.Linear(10, 4, bias=False)
    nn.init.constant_(layer.weight, 1.0)
    with torch.no_grad():
        layer.weight[:, :5] = 0.0
    assert param_count(layer) == 40
    assert nonzero_param_count(layer) == 20


def test_nonzero_tied_counted_once():
    m = tiny_transformer(True)
    with torch.no_grad():
        m.embed.weight[:25] = 0.0
    dense = sum(int((p != 0).sum()) for p in set(m.parameters()))
    assert nonzero_param_count(m) == dense


class Mask(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def test_nonzero_counts_parametrized_effective_weight():
    layer = nn.Linear(6, 4)
    nn.init.constant_(layer.weight, 1.0)
    nn.init.constant_(layer.bias, 1.0)
    mask = torch.zeros(4, 6)
    mask[:, :2] = 1.0
    parametrize.register_parametrization(layer, "weight", Mask(mask))
    assert nonzero_param_count(layer) == 8 + 4  # effective weight + bias
    assert param_count(layer) == 24 + 4  # stored original + bias
    assert size_bytes(layer) == (24 + 4 + 24) * 4  # original, bias and the mask buffer


def test_nonzero_counts_torch_prune_mask():
    layer = nn.Linear(10, 10, bias=False)
    nn.init.constant_(layer.weight, 1.0)
    prune.random_unstructured(layer, "weight", amount=0.3)
    assert nonzero_param_count(layer) == 70


def test_size_report_and_dtype():
    m = nn.Linear(10, 20).to(torch.float16)
    assert size_report(m) == {"params": 220, "nonzero_params": 220, "size_bytes": 440}


def test_size_counts_buffers():
    bn = nn.BatchNorm1d(4)  # weight, bias, running_mean, running_var (4 each), num_batches (int64)
    assert size_bytes(bn) == 4 * 4 * 4 + 8
