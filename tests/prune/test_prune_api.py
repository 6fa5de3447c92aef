"""prune_: one call on any nn.Module, a real Hugging Face GPT-2 (built from a config) included."""

import pytest
import torch
from prune_standins import TinyTransformerLM, lm_batches
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel  # built from a config: no download

from prunekit.errors import PrunekitError
from prunekit.prune import (
    Cubic,
    FactorizedLinear,
    OneShot,
    PruneConfig,
    Pruner,
    ScopeConfig,
    finalize,
    prune_,
)
from prunekit.prune.api import logits_of
from prunekit.prune.schedules import round_half_up


def _gpt2():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=17, n_positions=16, n_embd=8, n_layer=2, n_head=2)
    return GPT2LMHeadModel(cfg)


@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "activation"])
def test_prune_gpt2_shaped_model(criterion):
    model = _gpt2()
    cal = lm_batches(17, 3, T=8)
    cfg = PruneConfig(criterion=criterion, schedule=OneShot(sparsity=0.5))
    out = prune_(model, cfg, calibration=cal if criterion != "magnitude" else None)
    assert out is model
    c_fc = model.transformer.h[0].mlp.c_fc.weight
    assert int((c_fc == 0).sum()) == round_half_up(c_fc.numel() / 2)
    wte = model.transformer.wte.weight
    assert torch.equal(model.lm_head.weight, wte)  # still tied
    assert bool((wte != 0).any(dim=1).all())  # no subword lost
    assert bool((model.transformer.wpe.weight != 0).all())  # positions untouched
    assert all(p.grad is None for p in model.parameters())
    logits = logits_of(model(cal[0][0]))
    assert logits.shape == (3, 8, 17) and torch.isfinite(logits).all()


def test_structured_gpt2_mlp_units():
    model = _gpt2()
    cfg = PruneConfig(
        method="structured", schedule=OneShot(sparsity=0.25), scope=ScopeConfig(include=["*.mlp.*"])
    )
    pruner = Pruner(model, cfg).attach()
    assert [s.kind for s in pruner.groups] == ["ffn_units", "ffn_units"]
    pruner.prune_now(0.25)
    mlp = model.transformer.h[0].mlp
    dead = (mlp.c_fc.weight == 0).all(dim=0)  # Conv1D: output units are columns
    assert int(dead.sum()) == 8
    assert torch.equal((mlp.c_proj.weight == 0).all(dim=1), dead)


def test_factorized_one_shot_and_finalize():
    torch.manual_seed(0)
    model = TinyTransformerLM()
    prune_(model, PruneConfig(method="factorized", schedule=OneShot(sparsity=0.5)))
    assert isinstance(model.lm_head, FactorizedLinear)
    finalize(model)
    assert model.lm_head.kept_rank == model.lm_head.rank  # masks baked into d
    assert int((model.lm_head.d == 0).sum()) > 0


def test_prune_plain_sequential_and_classification_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    cal = [(torch.randn(4, 6), torch.randint(0, 3, (4,))) for _ in range(2)]
    prune_(model, PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.25)), calibration=cal)
    assert int((model[0].weight == 0).sum()) == 12


def test_prune_errors():
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(PrunekitError) as exc:
        prune_(model, PruneConfig(schedule=Cubic(s_f=0.5, dt=1, n=1)))
    assert str(exc.value) == (
        "prune_ prunes in one shot but schedule is Cubic: use schedule=OneShot(sparsity=...), "
        "or attach a Pruner to your training loop"
    )
    with pytest.raises(PrunekitError) as exc:
        prune_(model, PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5)))
    assert str(exc.value) == (
        "criterion=taylor needs calibration data: pass calibration=[(x, y), ...] to prune_"
    )
    with pytest.raises(PrunekitError) as exc:
        prune_(
            model, PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5)), calibration=[]
        )
    assert str(exc.value).startswith("criterion=taylor needs gradients")
    with pytest.raises(PrunekitError) as exc:
        prune_(model, {"schedule": OneShot(sparsity=0.5)})  # type: ignore[arg-type]
    assert str(exc.value) == "config must be a PruneConfig, got dict"
    with pytest.raises(PrunekitError) as exc:
        logits_of({"loss": torch.tensor(1.0)})
    assert str(exc.value) == (
        "cannot find logits in a model output of type dict: pass loss_fn=lambda model, x, y: "
        "... to prune_"
    )
