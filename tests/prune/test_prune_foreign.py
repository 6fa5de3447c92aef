"""Issue 14, pruning side: tied masks through safetensors' save_model, factorized checkpoints
re-attached without a pruner, float token ids, and GPT-2's fused heads."""

import pytest
import torch
from prune_standins import TinyTransformerLM
from safetensors.torch import load_file, load_model, save_model
from transformers import GPT2Config, GPT2LMHeadModel  # built from a config: no download

from prunekit.errors import PrunekitError
from prunekit.prune import (
    FactorizedEmbedding,
    FactorizedLinear,
    OneShot,
    PruneConfig,
    Pruner,
    attach_masks_from_state_dict,
    get_mask,
    prune_,
)
from prunekit.prune.masks import mask_modules


def _gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=17, n_positions=16, n_embd=8, n_layer=2, n_head=2)
    cfg.bos_token_id = cfg.eos_token_id = 0
    return GPT2LMHeadModel(cfg).eval()


def test_tied_gpt2_keeps_every_mask_through_save_model(tmp_path):
    model = _gpt2()
    prune_(model, PruneConfig(schedule=OneShot(sparsity=0.5)))
    assert len(mask_modules(model)) == 10  # 8 Conv1D + wte + lm_head (one shared mask)
    save_model(model, str(tmp_path / "m.safetensors"))  # drops the duplicate (tied) names
    sd = load_file(str(tmp_path / "m.safetensors"))
    fresh = _gpt2(seed=1)
    assert attach_masks_from_state_dict(fresh, sd) == 10
    load_model(fresh, str(tmp_path / "m.safetensors"))
    wte, head = fresh.transformer.wte, fresh.lm_head
    assert get_mask(wte, "weight") is get_mask(head, "weight") is not None
    keep = get_mask(wte, "weight").mask.clone()
    assert torch.equal(keep, get_mask(model.transformer.wte, "weight").mask)
    opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    x = torch.randint(0, 17, (2, 6))
    for _ in range(3):
        fresh(x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    assert bool((wte.weight[~keep] == 0).all())  # pruned weights did not grow back
    assert bool((wte.parametrizations.weight.original[~keep] == 0).all())


@pytest.mark.parametrize("tie", [False, True])
def test_factorized_checkpoint_attaches_without_a_pruner(tie):
    torch.manual_seed(0)
    model = TinyTransformerLM(tie=tie)
    prune_(model, PruneConfig(method="factorized", schedule=OneShot(sparsity=0.5)))
    sd = model.state_dict()
    fresh = TinyTransformerLM(tie=tie)
    assert attach_masks_from_state_dict(fresh, sd) == 14  # 12 Linears, embed, lm_head
    fresh.load_state_dict(sd)
    assert isinstance(fresh.lm_head, FactorizedLinear)
    assert isinstance(fresh.embed, FactorizedEmbedding)
    if tie:
        assert fresh.lm_head.U is fresh.embed.U
        d_head, d_embed = (m.parametrizations.d for m in (fresh.lm_head, fresh.embed))
        assert d_head.original is d_embed.original and d_head[0] is d_embed[0]  # one mask
    x = torch.randint(0, 13, (2, 5))
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_factorized_gpt2_conv1d_checkpoint_round_trip():
    model = _gpt2()
    prune_(model, PruneConfig(method="factorized", schedule=OneShot(sparsity=0.5)))
    assert isinstance(model.transformer.h[0].mlp.c_fc, FactorizedLinear)
    sd = model.state_dict()
    fresh = _gpt2(seed=1)
    attach_masks_from_state_dict(fresh, sd)
    fresh.load_state_dict(sd)
    x = torch.randint(0, 17, (2, 5))
    with torch.no_grad():
        assert torch.equal(model(x).logits, fresh(x).logits)


def test_float_token_ids_in_calibration_data():
    x = torch.randint(0, 17, (2, 6))
    cfg = PruneConfig(criterion="taylor", schedule=OneShot(sparsity=0.5))
    with pytest.raises(PrunekitError) as exc:
        prune_(_gpt2(), cfg, calibration=[(x.float(), x)])
    assert str(exc.value) == (
        "embedding 'transformer.wte' got float32 token ids from the calibration batches: pass "
        "integer ids (torch.long), e.g. x.long()"
    )
    with pytest.raises(PrunekitError) as exc:
        prune_(_gpt2(), cfg, calibration=[(x, x.float())])
    assert str(exc.value) == (
        "calibration targets y are float32: cross-entropy needs integer class ids; pass "
        "y.long(), or a loss_fn for other targets"
    )


def test_gpt2_fused_heads_are_a_structured_family():
    model = _gpt2()
    pruner = Pruner(model, PruneConfig(method="structured", schedule=OneShot(sparsity=0.5)))
    pruner.attach()
    kinds = sorted(s.kind for s in pruner.groups)
    assert kinds == ["embedding_cols", "ffn_units", "ffn_units", "heads", "heads"]
    pruner.prune_now(0.5)
    attn = model.transformer.h[0].attn
    out_cols = (attn.c_attn.weight == 0).all(dim=0).reshape(3, 2, 4)  # (q/k/v, head, d)
    assert int(out_cols.all(dim=2).all(dim=0).sum()) == 1  # one of two heads, q, k and v
    read = (attn.c_proj.weight == 0).all(dim=1).reshape(2, 4).all(dim=1)
    assert torch.equal(read, out_cols.all(dim=2).all(dim=0))
