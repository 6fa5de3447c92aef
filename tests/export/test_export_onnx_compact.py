"""ONNX of compact models: onnxruntime's logits match torch's (<= 1e-4) at several shapes."""

import pytest
from compact_helpers import RNN_SCOPE, ids, pruned, tiny_rnn, tiny_transformer
from torch import nn

from prunekit.export.compact import compact

pytest.importorskip("onnxruntime")
from prunekit.export.onnx_export import check_onnx, export_onnx, onnx_ready  # noqa: E402

CASES = {
    "transformer-structured": lambda: pruned(tiny_transformer(), "structured", 0.5),
    "transformer-factorized": lambda: pruned(
        tiny_transformer(tie_embeddings=True), "factorized", 0.6
    ),
    "lstm-structured": lambda: pruned(tiny_rnn("lstm"), "structured", 0.5, scope=RNN_SCOPE),
    "gru-factorized": lambda: pruned(
        tiny_rnn("gru"), "factorized", 0.6, scope={"module_types": ["Linear", "Embedding"]}
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compact_onnx_matches_torch(tmp_path, case):
    small, _ = compact(CASES[case](), repeats=2)
    path = export_onnx(small, tmp_path / "m.onnx", seq_len=5)
    for shape in [(2, 5), (1, 1), (3, 9)]:
        assert check_onnx(small, path, ids(shape)) < 1e-4


def test_csr_layers_export_through_their_dense_twin(tmp_path):
    masked = pruned(tiny_rnn("lstm"), "unstructured", 0.8, scope=RNN_SCOPE)
    small, _ = compact(masked, sparse="csr", repeats=2)
    twin = onnx_ready(small)
    assert isinstance(twin.rnn, nn.LSTM)
    path = export_onnx(twin, tmp_path / "m.onnx", seq_len=5)
    assert check_onnx(small, path, ids((2, 6))) < 1e-4
