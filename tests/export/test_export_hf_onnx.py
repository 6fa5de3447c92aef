"""Compact foreign models through Hugging Face's save_pretrained / from_pretrained (where the
config can express the shapes, else a clear error) and through ONNX."""

import pytest
import torch
from transformers import GPT2LMHeadModel, Wav2Vec2ForCTC

from prunekit.bench.foreign_models import spec
from prunekit.errors import PrunekitError
from prunekit.export.compact import compact
from prunekit.export.hf_pretrained import save_pretrained
from prunekit.export.onnx_export import check_onnx, export_onnx, onnx_ready
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_
from prunekit.prune.api import logits_of

FAST = {"repeats": 2, "sparse": "dense"}


def _compact(name: str, method: str = "structured", scope: ScopeConfig | None = None, **args):
    sp = spec(name, tiny=True)
    model = sp.build()
    cfg = PruneConfig(
        method=method, schedule=OneShot(sparsity=0.5), scope=scope or ScopeConfig(),
        method_args=args,
    )  # fmt: skip
    prune_(model, cfg)
    return sp, compact(model, **FAST)[0]


def _out(model, x):
    with torch.no_grad():
        return logits_of(model(x))


def test_gpt2_with_pruned_ffn_units_round_trips_through_from_pretrained(tmp_path):
    sp, small = _compact("gpt2", scope=ScopeConfig(include=["*.mlp.*"]))
    save_pretrained(small, tmp_path / "hf")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert back.config.n_inner == 32
    x = sp.example()
    assert torch.allclose(_out(back, x), _out(small, x), atol=1e-6)


def test_wav2vec2_conv_channels_and_ffn_round_trip_through_from_pretrained(tmp_path):
    scope = ScopeConfig(include=["*feature_extractor*", "*feed_forward*"])
    sp, small = _compact("wav2vec2", scope=scope)
    save_pretrained(small, tmp_path / "hf")
    back = Wav2Vec2ForCTC.from_pretrained(tmp_path / "hf").eval()
    assert list(back.config.conv_dim) == [8, 8, 16] and back.config.intermediate_size == 32
    x = sp.example()
    assert torch.allclose(_out(back, x), _out(small, x), atol=1e-5)


def test_what_a_config_cannot_express_is_named(tmp_path):
    _, small = _compact("gpt2")
    with pytest.raises(PrunekitError) as exc:
        save_pretrained(small, tmp_path / "hf")
    msg = str(exc.value)
    assert msg.startswith("GPT2Config cannot express this compact model: transformer.wte is sliced")
    assert "transformer.h.1.attn keeps 2 of 4 heads: the config has one head count" in msg
    assert msg.endswith("load_compact(folder, model=...) instead")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(PrunekitError, match="is low rank"):
        save_pretrained(_compact("gpt2", "factorized")[1], tmp_path / "hf")
    with pytest.raises(PrunekitError, match="UserLSTM is not a Hugging Face model"):
        save_pretrained(_compact("lstm", consumers={"lstm": "logits"})[1], tmp_path / "hf")


@pytest.mark.parametrize("name", ["gpt2", "lstm", "convgru", "wav2vec2"])
def test_onnx_export_of_compact_foreign_models(tmp_path, name):
    args = {"consumers": spec(name).consumers} if spec(name).consumers else {}
    sp, small = _compact(name, **args)
    fp32 = onnx_ready(small)
    x = sp.example()
    name_in = "idx" if not x.is_floating_point() else "input"
    path = export_onnx(fp32, tmp_path / "m.onnx", example=x, input_name=name_in)
    shorter = x[:1, : x.shape[1] - 2]  # other batch and length: the axes are dynamic
    assert check_onnx(fp32, path, shorter, input_name=name_in) < 1e-4
