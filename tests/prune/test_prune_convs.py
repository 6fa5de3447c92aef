"""nn.Conv1d / nn.Conv2d: in scope by default, unstructured, structured by output channel (the
next layer and the norms in between coupled), factorized; torch's Conv1d is not HF's Conv1D."""

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune import (
    OneShot,
    PruneConfig,
    Pruner,
    ScopeConfig,
    count_params,
    prune_,
    resolve_scope,
    sparsity_for_size,
)
from prunekit.prune.channels import find_chains
from prunekit.prune.factorized import FactorizedConv


def _stack(dims: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return nn.Sequential(
        conv(4, 8, 3, padding=1), bn(8), nn.ReLU(),
        conv(8, 6, 3), nn.GroupNorm(6, 6), nn.GELU(),
        conv(6, 6, 1, groups=2),
    ).eval()  # fmt: skip


class ConvBlock(nn.Module):
    """conv -> activation -> per-channel GroupNorm, as in Wav2Vec2's feature encoder."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 3)
        self.act = nn.GELU()
        self.norm = nn.GroupNorm(c_out, c_out)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([ConvBlock(1, 8), ConvBlock(8, 8), ConvBlock(8, 4)])
        self.proj = nn.Linear(4, 5)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.proj(x.transpose(1, 2))


def test_convs_are_in_the_default_scope():
    names = [t.name for t in resolve_scope(_stack(), ScopeConfig())]
    assert names == ["0.weight", "3.weight", "6.weight"]
    assert [t.kind for t in resolve_scope(_stack(2), ScopeConfig())] == ["conv"] * 3


def test_hf_conv1d_type_name_on_a_torch_conv_model_says_which_is_which():
    with pytest.raises(PrunekitError) as exc:
        resolve_scope(_stack(), ScopeConfig(module_types=("Conv1D",)))
    assert str(exc.value) == (
        "scope.module_types has 'Conv1D' (Hugging Face's transposed Linear (GPT-2)), which this "
        "model does not have; its convolutions are 'Conv1d' (torch's nn.Conv1d): use "
        "module_types=[..., 'Conv1d']"
    )


@pytest.mark.parametrize("dims", [1, 2])
def test_unstructured_convs(dims):
    model = _stack(dims)
    prune_(model, PruneConfig(schedule=OneShot(sparsity=0.5)))
    w = model[0].weight
    assert int((w == 0).sum()) == w.numel() // 2


@pytest.mark.parametrize("dims", [1, 2])
def test_structured_conv_channels_couple_the_next_conv(dims):
    model = _stack(dims)
    pruner = Pruner(model, PruneConfig(method="structured", schedule=OneShot(sparsity=0.5)))
    pruner.attach()
    families = {s.name: s for s in pruner.groups}
    assert sorted(families) == ["0:channels", "3.weight:rows", "6.weight:rows"]
    members = [(m.param, m.dim) for m in families["0:channels"].members]
    assert members == [("0.weight", 0), ("3.weight", 1)]  # 3 -> 6 is grouped: not coupled
    pruner.prune_now(0.5)
    dead = (model[0].weight == 0).flatten(1).all(dim=1)
    assert int(dead.sum()) == 4
    read = model[3].weight.transpose(0, 1).flatten(1)
    assert torch.equal((read == 0).all(dim=1), dead)


def test_chains_run_through_conv_blocks_and_stop_at_a_linear_without_consumers():
    chains = find_chains(Encoder())
    assert {k: (c.consumer, c.norms) for k, c in chains.items()} == {
        "layers.0.conv": ("layers.1.conv", ("layers.0.norm",)),
        "layers.1.conv": ("layers.2.conv", ("layers.1.norm",)),
    }
    chains = find_chains(Encoder(), {"layers.2.conv": "proj"})
    assert chains["layers.2.conv"].consumer == "proj"
    assert chains["layers.2.conv"].norms == ("layers.2.norm",)


def test_a_consumer_that_cannot_read_the_channels_is_named():
    cfg = PruneConfig(
        method="structured", schedule=OneShot(sparsity=0.5),
        method_args={"consumers": {"layers.0.conv": "proj"}},
    )  # fmt: skip
    with pytest.raises(PrunekitError) as exc:
        Pruner(Encoder(), cfg).attach()
    assert str(exc.value) == (
        "method_args consumers['layers.0.conv']='proj' must name a layer reading 8 input channels "
        "(a Conv1d/Conv2d with groups=1, an nn.Linear, a Conv1D or an LSTM/GRU): fix the "
        "consumers mapping"
    )


@pytest.mark.parametrize("dims", [1, 2])
def test_factorized_conv_is_the_same_map_at_full_rank(dims):
    model = nn.Sequential(*list(_stack(dims))[:6]).eval()
    x = torch.randn(2, 4, 9) if dims == 1 else torch.randn(2, 4, 7, 6)
    with torch.no_grad():
        ref = model(x)
    Pruner(model, PruneConfig(method="factorized", schedule=OneShot(sparsity=0.0))).attach()
    assert isinstance(model[0], FactorizedConv) and isinstance(model[3], FactorizedConv)
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-5)


def test_factorized_conv_reaches_its_size():
    model = nn.Sequential(*list(_stack())[:6]).eval()
    target = count_params(model) // 2
    s = sparsity_for_size(model, target, method="factorized")
    prune_(model, PruneConfig(method="factorized", schedule=OneShot(sparsity=s)))
    assert count_params(model) <= target


def test_factorized_names_every_layer_it_cannot_factorize():
    model = nn.Sequential(nn.Conv1d(4, 4, 1, groups=2), nn.Conv1d(4, 4, 1, groups=4))
    model.add_module("rnn", nn.GRU(4, 4))
    with pytest.raises(PrunekitError) as exc:
        prune_(model, PruneConfig(method="factorized", schedule=OneShot(sparsity=0.5)))
    assert str(exc.value) == (
        "method=factorized cannot factorize 3 layers: 0 (Conv1d with groups=2), 1 (Conv1d with "
        "groups=4), rnn (GRU); it supports nn.Linear, Hugging Face Conv1D, nn.Conv1d / Conv2d "
        "with groups=1 and nn.Embedding (method_args embeddings=true): exclude them "
        "(scope.exclude=['0', '1', 'rnn']) or use method=unstructured"
    )
