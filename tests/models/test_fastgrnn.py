"""FastRNN / FastGRNN cells: the paper's equations, EdgeML's initialisation and EdgeML's outputs."""

import math

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models.edgeml_ref import edgeml_cell, import_edgeml, load_from_edgeml
from prunekit.models.fastgrnn import (
    FastGRNNCell,
    FastRNNCell,
    FastRNNLayer,
    quant_sigm,
    quant_tanh,
)

NLS = [("sigmoid", "tanh"), ("quantSigm", "quantTanh"), ("tanh", "sigmoid")]


def _perturbed(cell):
    """Move every parameter off its initial value, so a layout mix-up cannot go unnoticed."""
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


@pytest.mark.parametrize("ranks", [(None, None), (3, 5), (None, 4)])
@pytest.mark.parametrize("nls", NLS)
def test_fastgrnn_matches_edgeml(ranks, nls):
    torch.manual_seed(0)
    cell = _perturbed(
        FastGRNNCell(6, 10, w_rank=ranks[0], u_rank=ranks[1], gate_nl=nls[0], update_nl=nls[1])
    )
    ref = edgeml_cell(cell)
    x = torch.randn(4, 7, 6)
    ours, h_last = FastRNNLayer(cell)(x)
    theirs = import_edgeml().rnn.BaseRNN(ref)(x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert torch.equal(h_last, ours[:, -1])


@pytest.mark.parametrize("ranks", [(None, None), (3, 5)])
@pytest.mark.parametrize("update_nl", ["tanh", "quantTanh"])
def test_fastrnn_matches_edgeml(ranks, update_nl):
    torch.manual_seed(1)
    cell = _perturbed(FastRNNCell(6, 10, w_rank=ranks[0], u_rank=ranks[1], update_nl=update_nl))
    ref = edgeml_cell(cell)
    x, h0 = torch.randn(3, 9, 6), torch.randn(3, 10)
    ours, _ = FastRNNLayer(cell)(x, h0)
    theirs = import_edgeml().rnn.BaseRNN(ref)(x, h0)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [FastGRNNCell, FastRNNCell])
def test_load_from_edgeml_round_trip(cls):
    torch.manual_seed(2)
    cell = _perturbed(cls(5, 7, w_rank=2, u_rank=3))
    copy = load_from_edgeml(cls(5, 7, w_rank=2, u_rank=3), edgeml_cell(cell))
    for (name, a), (_, b) in zip(cell.named_parameters(), copy.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_initialisation_is_edgemls():
    rnn = import_edgeml().rnn
    torch.manual_seed(3)
    ours, theirs = (
        FastGRNNCell(32, 100, w_rank=16, u_rank=25),
        rnn.FastGRNNCell(32, 100, wRank=16, uRank=25),
    )
    for name in ("bias_gate", "bias_update", "zeta", "nu"):
        assert torch.equal(getattr(ours, name).view(-1), getattr(theirs, name).detach().view(-1))
    assert ours.zeta.item() == 1.0 and ours.nu.item() == -4.0
    fast = FastRNNCell(32, 100)
    assert (fast.alpha.item(), fast.beta.item()) == (-3.0, 3.0)
    w2 = ours.w[1].weight  # 1600 draws of 0.1 N(0, 1)
    assert abs(w2.std().item() - 0.1) < 0.01 and abs(w2.mean().item()) < 0.01
    assert ours.w[0].weight.shape == theirs.W1.shape and ours.u[1].weight.shape == theirs.U2.shape


def test_fastgrnn_step_by_hand():
    """One unit, full rank: h = z h + (sig(zeta)(1 - z) + sig(nu)) c with shared W, U."""
    cell = FastGRNNCell(1, 1)
    with torch.no_grad():
        cell.w.weight.fill_(0.5), cell.u.weight.fill_(-0.25)
        cell.bias_gate.fill_(0.1), cell.bias_update.fill_(-0.2)
        cell.zeta.fill_(0.3), cell.nu.fill_(-1.0)
    x, h = 2.0, 0.4
    pre = 0.5 * x - 0.25 * h
    z, c = 1 / (1 + math.exp(-(pre + 0.1))), math.tanh(pre - 0.2)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    want = z * h + (sig(0.3) * (1 - z) + sig(-1.0)) * c
    got = cell(torch.tensor([[x]]), torch.tensor([[h]])).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_fastrnn_step_by_hand():
    cell = FastRNNCell(1, 1, update_nl="quantTanh")
    with torch.no_grad():
        cell.w.weight.fill_(2.0), cell.u.weight.fill_(1.0), cell.bias_update.fill_(0.0)
    got = cell(torch.tensor([[0.25]]), torch.tensor([[0.1]])).item()
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert got == pytest.approx(sig(3.0) * 0.1 + sig(-3.0) * 0.6, rel=1e-6)


def test_quantized_nonlinearities():
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    assert quant_sigm(x).tolist() == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert quant_tanh(x).tolist() == [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0]


def test_weights_are_plain_linear_modules():
    cell = FastGRNNCell(4, 6, w_rank=2)
    assert isinstance(cell.w, nn.Sequential) and isinstance(cell.u, nn.Linear)
    names = sorted(n for n, _ in cell.named_parameters())
    assert names == [
        "bias_gate",
        "bias_update",
        "nu",
        "u.weight",
        "w.0.weight",
        "w.1.weight",
        "zeta",
    ]


def test_bad_nonlinearity_and_rank():
    with pytest.raises(PrunekitError) as err:
        FastGRNNCell(4, 6, gate_nl="softsign")
    assert str(err.value) == (
        "gate_nl='softsign' is not a nonlinearity: choose one of 'sigmoid', 'tanh', "
        "'quantSigm', 'quantTanh', 'relu'"
    )
    with pytest.raises(PrunekitError, match="rank=0 must be >= 1"):
        FastRNNCell(4, 6, w_rank=0)
