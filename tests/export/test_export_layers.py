import copy
import io

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export import (
    DenseLinear,
    Int8Linear,
    Int8LowRankLinear,
    LowRankLinear,
    SparseLinear,
    choose_linear,
    sparse_break_even,
    weight_sparsity,
)

RECORD_KEYS = {"kind", "sparsity", "dense_us", "sparse_us", "ratio", "shape", "dense_layout"}


def linear(in_f=16, out_f=24, sparsity=0.0, bias=True, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f, bias=bias)
    if sparsity:
        with torch.no_grad():
            lin.weight[torch.rand(out_f, in_f) < sparsity] = 0.0
    return lin


def inputs(in_f=16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(s + (in_f,), generator=g) for s in [(1,), (5,), (1, 1), (2, 7), (2, 3, 4)]]


def assert_matches(layer: nn.Module, lin: nn.Linear, atol=1e-5) -> None:
    with torch.no_grad():
        for x in inputs(lin.in_features):
            y = layer(x)
            assert y.shape == x.shape[:-1] + (lin.out_features,)
            torch.testing.assert_close(y, lin(x), atol=atol, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("sparsity", [0.0, 0.8])
def test_dense_and_sparse_equal_the_linear(bias, sparsity):
    lin = linear(sparsity=sparsity, bias=bias)
    dense = DenseLinear.from_linear(lin)
    assert dense.weight_t.shape == (16, 24) and dense.weight_t.is_contiguous()
    assert_matches(dense, lin)
    rows = DenseLinear.from_linear(lin, transposed=False)
    assert rows.weight_rows.shape == (24, 16) and rows.weight_rows.is_contiguous()
    assert_matches(rows, lin)
    sparse = SparseLinear.from_linear(lin)
    assert_matches(sparse, lin)
    assert sparse.nnz == int(torch.count_nonzero(lin.weight))
    torch.testing.assert_close(sparse.weight, lin.weight.detach(), atol=0, rtol=0)


def test_sparse_indices_are_int32_and_survive_copies():
    lin = linear(sparsity=0.9)
    sparse = SparseLinear.from_linear(lin)
    assert sparse.crow_indices.dtype == torch.int32
    assert sparse.col_indices.dtype == torch.int32
    assert sparse.csr.crow_indices().dtype == torch.int32
    assert sparse.csr.col_indices().dtype == torch.int32
    assert sparse.flops_per_token(1) == 2 * sparse.nnz + 24
    assert_matches(copy.deepcopy(sparse), lin)
    buf = io.BytesIO()
    torch.save(sparse.state_dict(), buf)
    buf.seek(0)
    fresh = SparseLinear.from_linear(linear(sparsity=0.9))
    fresh.load_state_dict(torch.load(buf))
    assert_matches(fresh, lin)


def test_low_rank_from_factors_is_exact_and_counts_its_flops():
    g = torch.Generator().manual_seed(0)
    U, V, b = torch.randn(24, 3, generator=g), torch.randn(3, 16, generator=g), torch.randn(24)
    lin = nn.Linear(16, 24)
    with torch.no_grad():
        lin.weight.copy_(U @ V)
        lin.bias.copy_(b)
    layer = LowRankLinear.from_factors(U, V, b)
    assert (layer.rank, layer.V_t.shape, layer.U_t.shape) == (3, (16, 3), (3, 24))
    assert_matches(layer, lin)
    assert flops_per_token(layer, 1) == 2 * 3 * (16 + 24) + 24
    with pytest.raises(PrunekitError):
        LowRankLinear.from_factors(U, V[:2], b)


def test_low_rank_from_linear_at_full_rank_reproduces_it():
    lin = linear()
    assert_matches(LowRankLinear.from_linear(lin, 16), lin, atol=1e-5)
    with pytest.raises(PrunekitError):
        LowRankLinear.from_linear(lin, 17)


def test_int8_linear_is_close_and_keeps_zeros():
    lin = linear(in_f=64, out_f=32, sparsity=0.7)
    q = Int8Linear.from_linear(lin)
    w = q.dequantized_weight()
    pruned = lin.weight == 0
    assert pruned.sum() > 0 and (w[pruned] == 0).all()
    assert (q.weight().int_repr()[pruned] == 0).all()
    x = torch.randn(5, 3, 64)
    with torch.no_grad():
        ref, y = lin(x), q(x)
    assert y.shape == ref.shape
    assert (y - ref).abs().max() <= 0.05 * ref.abs().max()
    assert flops_per_token(q, 1) == flops_per_token(lin, 1)


def test_int8_low_rank_keeps_rank():
    lin = linear(in_f=32, out_f=48)
    low = LowRankLinear.from_linear(lin, 8)
    q = Int8LowRankLinear.from_low_rank(low)
    assert q.rank == 8
    assert q.first.weight().shape == (8, 32) and q.second.weight().shape == (48, 8)
    x = torch.randn(4, 32)
    with torch.no_grad():
        ref = low(x)
        assert (q(x) - ref).abs().max() <= 0.05 * ref.abs().max()
    assert flops_per_token(q, 1) == flops_per_token(low, 1)


def test_choose_linear_keeps_dense_without_zeros():
    module, record = choose_linear(linear(), batch_size=1, threads=1, repeats=3)
    assert isinstance(module, DenseLinear)
    assert set(record) >= RECORD_KEYS
    assert record["kind"] == "dense" and record["sparsity"] == 0.0
    assert record["dense_us"] > 0 and record["sparse_us"] is None


@pytest.mark.parametrize("batch_size", [1, 4])
def test_choose_linear_record_agrees_with_its_choice(batch_size):
    lin = linear(in_f=64, out_f=64, sparsity=0.95)
    module, record = choose_linear(lin, batch_size=batch_size, threads=1, repeats=3)
    assert set(record) >= RECORD_KEYS
    assert record["sparsity"] == pytest.approx(weight_sparsity(lin.weight))
    assert record["dense_us"] > 0 and record["sparse_us"] > 0
    assert record["ratio"] == pytest.approx(record["dense_us"] / record["sparse_us"])
    assert record["kind"] == ("sparse" if record["ratio"] >= 1.05 else "dense")
    assert isinstance(module, SparseLinear if record["kind"] == "sparse" else DenseLinear)
    assert_matches(module, lin)


def test_cold_timing_cycles_through_enough_copies_to_miss_the_cache(monkeypatch):
    import prunekit.export.choose as choose

    monkeypatch.setattr(choose, "COLD_BYTES", 64 * 64 * 4 * 3)  # three copies of a 64 x 64 weight
    layer = DenseLinear.from_linear(linear(in_f=64, out_f=64))
    seen = []
    layer.register_forward_hook(lambda m, i, o: seen.append(id(m)))
    call = choose.timed_call(layer, torch.randn(1, 64), cold=True)
    for _ in range(6):
        call()
    assert len(set(seen)) == 3 and seen[:3] == seen[3:] and seen[0] == id(layer)
    lin = linear(in_f=64, out_f=64, sparsity=0.9)
    module, record = choose_linear(lin, batch_size=1, threads=1, repeats=3, cold=True)
    assert record["cold"] is True
    assert_matches(module, lin)


def test_sparse_break_even_is_on_the_grid():
    grid = (0.5, 0.9, 0.98)
    s = sparse_break_even(32, 32, 1, 1, sparsities=grid, repeats=3)
    assert s in grid + (1.0,)


def test_cold_timing_counts_int8_layers_by_their_packed_bytes():
    import prunekit.export.choose as choose

    int8 = Int8Linear.from_linear(linear(in_f=64, out_f=32))
    assert choose._bytes(int8) >= 64 * 32  # one byte per weight, plus scales and bias
    assert choose.timed_call(int8, torch.randn(1, 64), cold=True)().shape == (1, 32)
