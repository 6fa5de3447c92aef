import pytest
import torch

from prunekit.data import LMBatches
from prunekit.errors import PrunekitError


def test_batchify_shapes_and_rows():
    batches = LMBatches(torch.arange(103), batch_size=4, bptt=5)
    assert batches.data.shape == (4, 25)  # 3 leftover tokens dropped
    assert batches.data.dtype == torch.int64
    assert batches.data[2].tolist() == list(range(50, 75))
    assert len(batches) == 4  # (25 - 1) // 5
    assert batches.num_tokens == 4 * 5 * 4


def test_window_inputs_and_shifted_targets():
    batches = LMBatches(torch.arange(103), batch_size=4, bptt=5)
    x, y = batches.window(3)
    assert x.shape == y.shape == (4, 5)
    assert x[0].tolist() == [15, 16, 17, 18, 19]
    assert x[3].tolist() == [90, 91, 92, 93, 94]
    assert torch.equal(y, x + 1)
    with pytest.raises(IndexError):
        batches.window(4)


def test_window_targets_follow_inputs_in_stream():
    tokens = torch.randint(0, 50, (1000,), generator=torch.Generator().manual_seed(0))
    batches = LMBatches(tokens.to(torch.int32), batch_size=3, bptt=7)
    for i in range(len(batches)):
        x, y = batches.window(i)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:])
        for r in range(3):
            start = r * (1000 // 3) + i * 7
            assert x[r].tolist() == tokens[start : start + 7].tolist()
            assert y[r].tolist() == tokens[start + 1 : start + 8].tolist()


def test_exactly_one_window():
    batches = LMBatches(torch.arange(12), batch_size=2, bptt=5)  # 6 columns: 5 inputs + 1
    assert len(batches) == 1
    assert batches.window(0)[1].tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 10, 11]]


def test_too_few_tokens():
    with pytest.raises(
        PrunekitError,
        match=r"split has 11 tokens, too few for one window of batch_size=2 x bptt=5 "
        r"\(needs 12\): lower batch_size or bptt",
    ):
        LMBatches(torch.arange(11), batch_size=2, bptt=5)
    with pytest.raises(PrunekitError, match=r"bptt=0 must both be >= 1"):
        LMBatches(torch.arange(100), batch_size=2, bptt=0)


def test_order_is_deterministic_per_seed_and_epoch():
    batches = LMBatches(torch.arange(2000), batch_size=2, bptt=10)
    assert len(batches) == 99
    first = batches.order(epoch=0, seed=1)
    assert sorted(first) == list(range(99))
    assert batches.order(epoch=0, seed=1) == first
    assert batches.order(epoch=1, seed=1) != first
    assert batches.order(epoch=0, seed=2) != first
    expected = torch.randperm(99, generator=torch.Generator().manual_seed(1_000_003)).tolist()
    assert first == expected
    assert batches.order(epoch=5, seed=1, shuffle=False) == list(range(99))


def test_shard_rows():
    x = torch.arange(24).view(6, 4)
    assert LMBatches.shard(x, rank=1, world_size=3).tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]]
    assert torch.equal(torch.cat([LMBatches.shard(x, r, 2) for r in range(2)]), x)
    assert torch.equal(LMBatches.shard(x, 0, 1), x)


def test_shard_needs_divisible_batch():
    with pytest.raises(
        PrunekitError, match=r"batch_size=6 must be divisible by the number of processes 4"
    ):
        LMBatches.shard(torch.zeros(6, 3), rank=0, world_size=4)
