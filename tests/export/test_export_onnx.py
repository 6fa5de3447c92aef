import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.export import LowRankLinear, SparseLinear, fastest_dense, quantize_int8
from prunekit.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig

pytest.importorskip("onnxruntime")
from prunekit.export.onnx_export import check_onnx, export_onnx  # noqa: E402

V = 23
SHAPES = [(2, 5), (1, 1), (3, 11)]  # the exported example is (2, 5): batch and length vary


def tiny_transformer() -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerLMConfig(
        vocab_size=V, d_model=16, n_layer=2, n_head=2, d_ff=32, dropout=0.0, max_rel_pos=4
    )
    return TransformerLM(cfg).eval()


def tiny_rnn(cell: str) -> RNNLM:
    torch.manual_seed(0)
    cfg = RNNLMConfig(vocab_size=V, cell=cell, d_embed=8, d_hidden=12, n_layer=2, dropout=0.0)
    return RNNLM(cfg).eval()


def ids(shape) -> torch.Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(sum(shape)))


def assert_exports(model, tmp_path, exporter="torchscript") -> None:
    path = export_onnx(model, tmp_path / "m.onnx", seq_len=5, exporter=exporter)
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))
    for shape in SHAPES:
        assert check_onnx(model, path, ids(shape)) < 1e-4


def test_transformer(tmp_path):
    assert_exports(tiny_transformer(), tmp_path)


def test_compact_transformer(tmp_path):
    model = fastest_dense(tiny_transformer())
    model.blocks[0].ffn.fc_in = LowRankLinear.from_linear(model.blocks[0].ffn.fc_in, 4)
    assert_exports(model, tmp_path)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn(tmp_path, cell):
    assert_exports(tiny_rnn(cell), tmp_path)
    assert_exports(fastest_dense(tiny_rnn(cell), rnn_onednn=False), tmp_path)


def test_unexportable_layers_are_user_errors(tmp_path):
    model = tiny_transformer()
    model.lm_head = SparseLinear.from_linear(model.lm_head)
    with pytest.raises(PrunekitError, match="SparseLinear"):
        export_onnx(model, tmp_path / "s.onnx", seq_len=3)
    with pytest.raises(PrunekitError, match="int8"):
        export_onnx(quantize_int8(tiny_rnn("lstm")), tmp_path / "q.onnx", seq_len=3)
    with pytest.raises(PrunekitError):
        export_onnx(tiny_transformer(), tmp_path / "x.onnx", seq_len=3, exporter="tflite")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("make", [tiny_transformer, lambda: tiny_rnn("lstm")])
def test_dynamo_exporter(tmp_path, make):
    assert_exports(fastest_dense(make(), rnn_onednn=False), tmp_path, exporter="dynamo")
