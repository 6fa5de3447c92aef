"""Byte quantization (EdgeML's scheme), the integer-only path, its C reference and the sizes."""

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models.kws import KWSClassifier, KWSConfig
from prunekit.quant import (
    QuantFastKWS,
    c_size_bytes,
    compile_c,
    dequantize_logits,
    dequantized,
    export_c,
    float_size_bytes,
    int_forward,
    paper_size_bytes,
    quantize_kws,
    run_c,
)
from prunekit.quant.byteq import edgeml_round
from prunekit.quant.c_export import sparse_columns
from prunekit.quant.fixed import multiplier, rq

Q_NL = {"gate_nl": "quantSigm", "update_nl": "quantTanh"}


def _model(cell="fastgrnn", ranks=(None, None), keep=1.0, seed=0, hidden=20):
    torch.manual_seed(seed)
    m = KWSClassifier(KWSConfig(cell=cell, n_in=8, d_hidden=hidden, n_classes=5,
                                w_rank=ranks[0], u_rank=ranks[1], **Q_NL))  # fmt: skip
    with torch.no_grad():
        for lin in m.rnn.cell.modules():
            if isinstance(lin, nn.Linear):
                lin.weight.mul_(3.0)  # a state that moves, so errors could accumulate
                lin.weight.mul_((torch.rand_like(lin.weight) < keep).float())
    return m


def test_edgeml_rounding_and_scales():
    v = np.array([0.5, -0.5, 1.0, -1.0, 0.004, 2.0, -2.0])
    assert edgeml_round(v, 127.5).tolist() == [64, -64, 127, -128, 1, 127, -128]
    m = _model()
    q = quantize_kws(m, torch.randn(4, 10, 8))
    cell = m.rnn.cell
    mats = [cell.w.weight, cell.u.weight, cell.bias_gate, cell.bias_update]
    limit = max(float(t.detach().abs().max()) for t in mats)
    assert q.param_scale == round(255 / (2 * limit))  # EdgeML's paramScaleFactor
    assert q.scalars == {"zeta": round(1000 * torch.sigmoid(torch.tensor(1.0)).item()),
                         "nu": round(1000 * torch.sigmoid(torch.tensor(-4.0)).item())}  # fmt: skip
    assert q.scalars == {"zeta": 731, "nu": 18}
    np.testing.assert_array_equal(
        q.u[0], edgeml_round(cell.u.weight.detach().double().numpy(), q.param_scale)
    )


def test_fixed_point_primitives():
    M, n = multiplier(1 / 1000)
    assert 2**14 <= M < 2**15 and abs(M / 2**n - 1e-3) < 1e-7
    half = 2**14, 15  # 0.5
    assert rq(np.array([3, -3, 1, -1, 4]), *half).tolist() == [2, -1, 1, 0, 2]  # half rounds up
    with pytest.raises(PrunekitError, match="too large"):
        multiplier(2.0**20)


@pytest.mark.parametrize("cell", ["fastgrnn", "fastrnn"])
@pytest.mark.parametrize("ranks", [(None, None), (4, 6)])
def test_integer_path_tracks_the_float_model(cell, ranks):
    m = _model(cell, ranks)
    x = torch.randn(128, 40, 8)
    q = quantize_kws(m, x)
    xi = q.quantize_input(x)
    logits, h = int_forward(q, xi)
    ref = dequantized(m, q)  # the same int8 weights in float: only activation rounding differs
    with torch.no_grad():
        _, h_ref = ref.rnn(torch.from_numpy(xi.astype(np.float32) / 2**q.in_frac))
        float_logits = m(x).numpy()
    err = np.abs(h / 2**q.act_frac - h_ref.numpy()).max()
    assert err < 0.01  # 40 steps at 12 fraction bits (one step rounds at 2^-13)
    assert (logits.argmax(1) == float_logits.argmax(1)).mean() >= 0.95
    assert (
        np.abs(dequantize_logits(q, logits) - float_logits).max() < 0.1 * np.abs(float_logits).max()
    )


@pytest.mark.parametrize(("cell", "ranks", "keep"), [
    ("fastgrnn", (4, 6), 0.3), ("fastgrnn", (None, None), 1.0), ("fastrnn", (None, 5), 0.4)])  # fmt: skip
def test_c_reference_is_bit_equal_to_python(tmp_path, cell, ranks, keep):
    m = _model(cell, ranks, keep)
    x = torch.randn(24, 33, 8)
    q = quantize_kws(m, x)
    xi = q.quantize_input(x)
    logits, h = int_forward(q, xi)
    header = export_c(q, tmp_path)["fastgrnn_model.h"].read_text()
    assert (", 1, fg_" in header) == (keep < 0.5)  # sparse storage only below half density
    c_logits, c_h = run_c(compile_c(tmp_path), xi, q.n_classes)
    np.testing.assert_array_equal(c_logits, logits)
    np.testing.assert_array_equal(c_h, h)


def test_sparse_columns_layout():
    mat = np.array([[0, 5], [7, 0], [0, -2]], dtype=np.int8)
    vals, idx = sparse_columns(mat)
    assert vals.tolist() == [7, 5, -2] and idx.tolist() == [2, 0, 1, 3, 0]


def _google12(density=0.3):
    """Seed 002's Google-12 FastGRNN-Q shapes: 32 in, 100 hidden, ranks 16/25, 12 classes."""
    rng = np.random.default_rng(0)

    def mat(rows, cols):
        m = np.zeros((rows, cols), np.int8)
        m.flat[rng.choice(rows * cols, round(density * rows * cols), replace=False)] = 3
        return m

    zeros = lambda n: np.zeros(n, np.int8)  # noqa: E731
    return QuantFastKWS("fastgrnn", [mat(16, 32), mat(100, 16)], [mat(25, 100), mat(100, 25)],
                        {"bias_gate": zeros(100), "bias_update": zeros(100)}, {"zeta": 1, "nu": 1},
                        np.zeros((12, 100), np.int8), zeros(12), 100, 1.0, 12, 12)  # fmt: skip


def test_paper_size_of_google12_is_5_5_kb():
    q = _google12()
    nnz = round(0.3 * 512) + round(0.3 * 1600) + 2 * round(0.3 * 2500)
    assert paper_size_bytes(q) == 2 * nnz + 200 + 1200 + 12 + 8
    assert 5.5 <= paper_size_bytes(q) / 1024 < 5.6  # the paper's Table 1: 5.5 KB
    assert c_size_bytes(q) == paper_size_bytes(q) + 32 + 16 + 100 + 25  # one 0 per column


def test_float_size_counts_sparse_cell_matrices_with_indices():
    dense = _model(keep=1.0)
    assert float_size_bytes(dense) == 4 * sum(p.numel() for p in dense.parameters())
    sparse = _model(keep=0.2, seed=1)
    w = sparse.rnn.cell.w.weight
    nnz = int(w.count_nonzero())
    assert float_size_bytes(sparse) < float_size_bytes(dense)
    u_nnz = int(sparse.rnn.cell.u.weight.count_nonzero())
    rest = (
        sum(p.numel() for p in sparse.parameters()) - w.numel() - sparse.rnn.cell.u.weight.numel()
    )
    assert float_size_bytes(sparse) == 8 * nnz + 8 * u_nnz + 4 * rest


def test_integer_path_refuses_overflow_and_smooth_nonlinearities():
    with pytest.raises(PrunekitError) as err:
        m = KWSClassifier(KWSConfig(n_in=8, d_hidden=4, n_classes=3))  # sigmoid / tanh
        quantize_kws(m, torch.randn(2, 3, 8))
    assert str(err.value) == (
        "integer inference needs gate_nl='quantSigm' and update_nl='quantTanh' (got 'sigmoid', "
        "'tanh'): train the model with them (seed 002's FastGRNN-Q)"
    )
    with pytest.raises(
        PrunekitError, match="needs a KWSClassifier with a fastgrnn or fastrnn cell"
    ):
        quantize_kws(KWSClassifier(KWSConfig(cell="gru", n_in=8, d_hidden=4)), torch.randn(2, 3, 8))
    q = _google12(density=1.0)
    q.w = [np.full((16, 600), 127, np.int8), q.w[1]]  # 600 inputs of 127 x 32767 > 2^31
    q.mults = {"w0": (16384, 20), "w1": (16384, 20), "u0": (16384, 20), "u1": (16384, 20),
               "bias": (16384, 14), "scalar": (16777, 24)}  # fmt: skip
    with pytest.raises(PrunekitError, match=r"W x\[0\] overflows an int32 accumulator"):
        int_forward(q, np.full((1, 2, 600), 32767, np.int16))


def test_save_load_round_trip(tmp_path):
    from prunekit.quant import load_quantized, save_quantized

    m = _model("fastgrnn", (4, 6), keep=0.4)
    x = torch.randn(6, 12, 8)
    q = quantize_kws(m, x)
    save_quantized(q, tmp_path / "q.safetensors")
    back = load_quantized(tmp_path / "q.safetensors")
    xi = q.quantize_input(x)
    np.testing.assert_array_equal(int_forward(back, xi)[0], int_forward(q, xi)[0])
    assert (
        back.mults == q.mults
        and back.scalars == q.scalars
        and back.biases.keys() == q.biases.keys()
    )
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(PrunekitError, match="is not a safetensors file"):
        load_quantized(tmp_path / "bad.safetensors")
