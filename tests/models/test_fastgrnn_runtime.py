"""The time loop of FastRNNLayer (weights read once) and the TorchScript inference runtime."""

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.models.kws import KWSClassifier, KWSConfig
from prunekit.prune.masks import attach_mask
from prunekit.runtime.fastgrnn import fast_kws

CONFIGS = [
    {
        "cell": "fastgrnn",
        "w_rank": 4,
        "u_rank": 5,
        "gate_nl": "quantSigm",
        "update_nl": "quantTanh",
    },
    {"cell": "fastgrnn"},
    {"cell": "fastgrnn", "w_rank": 3, "gate_nl": "tanh", "update_nl": "quantSigm"},
    {"cell": "fastrnn", "u_rank": 6},
    {"cell": "fastrnn", "update_nl": "relu"},
]


def _model(cfg: dict, seed: int = 0) -> KWSClassifier:
    torch.manual_seed(seed)
    model = KWSClassifier(KWSConfig(n_in=8, n_classes=5, d_hidden=12, **cfg)).eval()
    with torch.no_grad():  # move every parameter off its initial value, as training does
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _step_loop(model: KWSClassifier, x: torch.Tensor) -> torch.Tensor:
    """The reference: the cell's own step, one time step at a time."""
    cell = model.rnn.cell
    h = x.new_zeros(x.shape[0], cell.d_hidden)
    for t in range(x.shape[1]):
        h = cell(x[:, t], h)
    return model.head(h)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_layer_and_runtime_match_the_cells_step(cfg):
    model = _model(cfg)
    x = torch.randn(3, 20, 8)
    with torch.no_grad():
        ref = _step_loop(model, x)
        assert torch.allclose(model(x), ref, atol=1e-6)
        assert torch.allclose(fast_kws(model)(x), ref, atol=1e-5)


def test_masked_weights_are_used_by_the_layer_and_the_runtime():
    model = _model(CONFIGS[0])
    for lin in (model.rnn.cell.u[0], model.rnn.cell.w[1]):
        attach_mask(lin, "weight")
        lin.parametrizations.weight[0].mask.copy_((torch.rand_like(lin.weight) < 0.4).float())
    x = torch.randn(2, 15, 8)
    with torch.no_grad():
        ref = _step_loop(model, x)
        assert torch.allclose(model(x), ref, atol=1e-6)
        assert torch.allclose(fast_kws(model)(x), ref, atol=1e-5)
    model.train()
    loss = model(x).square().sum()
    loss.backward()  # gradients flow through the masked, once-read weights
    assert model.rnn.cell.u[0].parametrizations.weight.original.grad.abs().sum() > 0


def test_runtime_refuses_other_models():
    with pytest.raises(PrunekitError, match="fast_kws compiles a KWSClassifier with a FastGRNN"):
        fast_kws(KWSClassifier(KWSConfig(cell="gru", n_in=8, d_hidden=6)))
