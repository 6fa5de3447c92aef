"""call_flops: the FLOPs of one concrete call, layers times rows plus attention products."""

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.eval.flops_trace import call_flops
from prunekit.export.layers import LowRankLinear, SparseLinear
from prunekit.export.sliced import SlicedLinear


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3, bias=False)
        self.fc = nn.Linear(4, 6)

    def forward(self, x):  # x (B, 3, T)
        h = self.conv(x).transpose(1, 2)  # (B, T - 2, 4)
        q = self.fc(h).view(h.shape[0], h.shape[1], 2, 3).transpose(1, 2)  # (B, 2, T', 3)
        a = F.scaled_dot_product_attention(q, q, q)  # (B, 2, T', 3)
        return a @ q.transpose(-1, -2)  # (B, 2, T', T')


def test_layers_rows_and_attention_by_hand():
    net = Net()
    B, T = 2, 7
    rows = B * (T - 2)
    conv = rows * 2 * 4 * 3 * 3  # per output position: 2 * out * in * kernel
    fc = rows * (2 * 4 * 6 + 6)
    sdpa = 4 * (B * 2 * (T - 2)) * (T - 2) * 3  # 2 products of (T', 3) x (3, T')
    matmul = 2 * (B * 2) * (T - 2) * 3 * (T - 2)
    assert call_flops(net, lambda: net(torch.randn(B, 3, T))) == conv + fc + sdpa + matmul


def test_compact_layers_count_their_own_cost_once():
    lin = nn.Linear(8, 6, bias=False)
    with torch.no_grad():
        lin.weight[:, :3] = 0
    x = torch.randn(5, 8)
    sparse = SparseLinear.from_linear(lin)
    assert call_flops(sparse, lambda: sparse(x)) == 5 * 2 * 30
    low = LowRankLinear.from_linear(lin, 2)
    assert call_flops(low, lambda: low(x)) == 5 * 2 * 2 * (8 + 6)
    sliced = SlicedLinear.from_linear(lin, None, torch.arange(3, 8))
    assert call_flops(sliced, lambda: sliced(x)) == 5 * 2 * 5 * 6  # inner counted, not twice
