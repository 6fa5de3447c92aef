"""Issue 14, export side: models prunekit did not build (HF GPT-2 with Conv1D, Wav2Vec2ForCTC, a
user's LSTM, a Conv1d + GRU CTC model) compacted, checked, saved and loaded into their own class."""

import pytest
import torch
from torch import nn

from prunekit.bench.foreign_models import hf_step, spec
from prunekit.errors import PrunekitError
from prunekit.export import (
    DenseLinear,
    LowRankLinear,
    SparseLinear,
    compact_size_report,
    load_compact,
    save_compact,
)
from prunekit.export.compact import compact
from prunekit.export.sliced import LowRankConv, SlicedEmbedding, TiedEmbedding
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, count_params, prune_
from prunekit.prune.api import logits_of

FAST = {"repeats": 2}


def _pruned(name: str, method: str, sparsity: float = 0.5, consumers=True, **cfg):
    sp = spec(name, tiny=True)
    model = sp.build()
    if method == "structured" and consumers and sp.consumers:
        cfg["method_args"] = {"consumers": sp.consumers}
    if method == "factorized" and sp.factorized_exclude:
        cfg["scope"] = ScopeConfig(exclude=list(sp.factorized_exclude))
    prune_(model, PruneConfig(method=method, schedule=OneShot(sparsity=sparsity), **cfg))
    return sp, model.eval()


def _out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return logits_of(model(x))


def _same(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    assert torch.allclose(_out(a, x), _out(b, x), atol=1e-5, rtol=1e-5)


def test_gpt2_structured_compact_slices_conv1d_layers_and_heads():
    sp, masked = _pruned("gpt2", "structured")
    small, manifest = compact(masked, **FAST)
    _same(masked, small, sp.example())
    block = small.transformer.h[0]
    assert not any(type(m).__name__ == "Conv1D" for m in small.modules())
    assert isinstance(block.mlp.c_fc, DenseLinear) and block.mlp.c_fc.out_features == 32
    assert block.mlp.c_proj.in_features == 32
    assert block.attn.c_attn.out_features == 3 * 8 and block.attn.c_proj.in_features == 8
    assert (block.attn.num_heads, block.attn.split_size) == (2, 8)
    assert small.lm_head.inner.in_features == 8  # embedding columns: lm_head reads 8 of 16
    assert compact_size_report(small)["params"] <= count_params(masked)
    assert len(manifest["conv1d"]) == 8


def test_gpt2_compact_decodes_with_its_cache_like_the_pruned_model():
    sp, masked = _pruned("gpt2", "structured")
    small, _ = compact(masked, **FAST)
    ids = sp.example()[:1]
    with torch.no_grad():
        outs = []
        for model in (masked, small):
            _, cache = hf_step(model, ids[:, :6])
            outs.append(hf_step(model, ids[:, 6:7], cache)[0])
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_gpt2_conv1d_layers_get_the_csr_choice():
    sp, masked = _pruned("gpt2", "unstructured", 0.9)
    small, manifest = compact(masked, sparse="csr", **FAST)
    assert isinstance(small.transformer.h[0].mlp.c_fc, SparseLinear)
    assert manifest["choices"]["transformer.h.0.mlp.c_fc"]["kind"] == "sparse"
    _same(masked, small, sp.example())


def test_gpt2_factorized_compact_is_low_rank_and_tied():
    sp, masked = _pruned("gpt2", "factorized", 0.7)
    small, manifest = compact(masked, **FAST)
    _same(masked, small, sp.example())
    assert isinstance(small.transformer.h[1].mlp.c_fc, LowRankLinear)
    assert isinstance(small.transformer.wte, TiedEmbedding)
    assert small.transformer.wte.table is small.lm_head.U_t  # the tied factors, stored once
    assert compact_size_report(small)["params"] <= count_params(masked)


@pytest.mark.parametrize("name", ["gpt2", "lstm", "convgru", "wav2vec2"])
@pytest.mark.parametrize("method", ["unstructured", "structured", "factorized"])
def test_save_and_load_into_the_users_own_model(tmp_path, name, method):
    sp, masked = _pruned(name, method)
    small, manifest = compact(masked, int8=method == "structured", **FAST)
    written = save_compact(small, manifest, tmp_path / "export")
    assert written["root"] == "foreign" and written["model_config"] is None
    fresh = sp.build()
    loaded = load_compact(tmp_path / "export", model=fresh)
    assert loaded is fresh
    x = sp.example()
    assert torch.equal(_out(loaded, x), _out(small, x))
    if method != "structured":  # fp32: the compact model computes the pruned one
        _same(masked, loaded, x)


def test_loading_a_foreign_export_needs_its_model(tmp_path):
    sp, masked = _pruned("lstm", "structured")
    small, manifest = compact(masked, **FAST)
    save_compact(small, manifest, tmp_path / "e")
    with pytest.raises(PrunekitError) as exc:
        load_compact(tmp_path / "e")
    assert str(exc.value) == (
        "this export is of a prunekit.bench.foreign_models.UserLSTM, which prunekit cannot "
        "build: pass load_compact(folder, model=<the dense model built the same way>)"
    )
    with pytest.raises(PrunekitError) as exc:
        load_compact(tmp_path / "e", model=spec("convgru", tiny=True).build())
    assert str(exc.value) == (
        "the export is of a prunekit.bench.foreign_models.UserLSTM but model= is a "
        "prunekit.bench.foreign_models.ConvGRUCTC: pass the dense model built the same way as "
        "the exported one"
    )


def test_a_model_of_other_sizes_is_refused_and_left_untouched(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    sp, masked = _pruned("gpt2", "structured")
    small, manifest = compact(masked, **FAST)
    save_compact(small, manifest, tmp_path / "e")
    other = GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_positions=128, n_embd=8, n_layer=2, n_head=2)
    )
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(PrunekitError) as exc:
        load_compact(tmp_path / "e", model=other)
    assert str(exc.value) == (
        "tensor 'transformer.h.0.ln_1.bias' is [16] in weights.safetensors but [8] in model=: "
        "the manifest does not match its weights; re-export the model"
    )
    after = other.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_pruned_embedding_columns_are_removed():
    sp, masked = _pruned("lstm", "structured")  # consumers: embed -> lstm, lstm -> logits
    small, manifest = compact(masked, **FAST)
    _same(masked, small, sp.example())
    assert type(small.embed) is nn.Embedding and small.embed.embedding_dim == 8
    assert small.lstm.input_size == 8
    assert compact_size_report(small)["params"] <= count_params(masked)
    kinds = {r["module"]: r["kind"] for r in manifest["structure"]}
    assert kinds == {"embed": "embedding_cols", "lstm": "rnn_units"}


def test_embedding_columns_without_a_known_reader_are_sliced():
    sp, masked = _pruned("lstm", "structured", consumers=False, scope=ScopeConfig(exclude=["lstm"]))
    small, _ = compact(masked, **FAST)
    _same(masked, small, sp.example())
    assert isinstance(small.embed, SlicedEmbedding) and small.embed.table.shape == (50, 8)


def test_compact_remembers_the_consumers_given_at_prune_time():
    sp, masked = _pruned("lstm", "structured")
    small, manifest = compact(masked, **FAST)  # no consumers passed here
    assert small.lstm.hidden_size == 8 and small.logits.in_features == 8
    record = next(r for r in manifest["structure"] if r["module"] == "lstm")
    assert "skipped" not in record and record["consumer"] == "logits"


def test_conv_gru_channels_norms_and_gru_inputs_are_sliced():
    sp, masked = _pruned("convgru", "structured")
    small, manifest = compact(masked, **FAST)
    _same(masked, small, sp.example())
    f = small.frontend
    assert (f[0].out_channels, f[1].num_features, f[3].in_channels) == (8, 8, 8)
    assert (f[3].out_channels, f[4].num_features, small.gru.input_size) == (8, 8, 8)
    assert small.gru.hidden_size == 6 and small.head.in_features == 6
    assert compact_size_report(small)["params"] <= count_params(masked)


def test_wav2vec2_feature_encoder_channels_and_group_norm_are_sliced():
    sp, masked = _pruned("wav2vec2", "structured")
    small, _ = compact(masked, **FAST)
    _same(masked, small, sp.example())
    layers = small.wav2vec2.feature_extractor.conv_layers
    assert layers[0].conv.out_channels == layers[0].layer_norm.num_channels == 8
    assert layers[1].conv.in_channels == 8
    assert layers[2].conv.out_channels == 16  # read by a LayerNorm over channels: kept


def test_factorized_convs_become_two_thin_convs():
    sp, masked = _pruned("convgru", "factorized", 0.8)
    small, manifest = compact(masked, **FAST)
    _same(masked, small, sp.example())
    assert isinstance(small.frontend[3], LowRankConv)
    assert {r["as"] for r in manifest["factorized"] if r["module"].startswith("frontend")} == {
        "lowrank"
    }
