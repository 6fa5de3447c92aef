import pytest
import torch
from torch import nn

from prunekit.bench.latency import (
    compare_variants,
    decode_ms_per_token,
    latency_markdown,
    scoring_tokens_per_s,
    vocab_size_of,
)
from prunekit.errors import PrunekitError
from prunekit.export import fastest_dense, quantize_int8
from prunekit.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig

V = 23


def tiny_transformer() -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerLMConfig(
        vocab_size=V, d_model=16, n_layer=2, n_head=2, d_ff=32, dropout=0.1, max_rel_pos=4
    )
    return TransformerLM(cfg)


def tiny_rnn() -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(RNNLMConfig(vocab_size=V, d_embed=8, d_hidden=12, n_layer=2, dropout=0.0))


def assert_positive_summary(result: dict, unit: str, repeats: int) -> None:
    for key in ("median", "p10", "p90"):
        assert result[f"{key}_{unit}"] > 0
    assert result[f"p10_{unit}"] <= result[f"median_{unit}"] <= result[f"p90_{unit}"]
    assert len(result[f"samples_{unit}"]) == repeats
    assert all(s > 0 for s in result[f"samples_{unit}"])


@pytest.mark.parametrize("make", [tiny_transformer, tiny_rnn])
def test_decode_ms_per_token(make):
    model = make().train()
    threads = torch.get_num_threads()
    r = decode_ms_per_token(model, context=5, steps=3, repeats=3, threads=1, warmup=1)
    assert_positive_summary(r, "ms", 3)
    assert (r["context"], r["steps"], r["repeats"], r["threads"], r["batch_size"]) == (
        5,
        3,
        3,
        1,
        1,
    )
    assert model.training  # mode restored
    assert torch.get_num_threads() == threads  # thread count restored


def test_decode_from_an_empty_state():
    r = decode_ms_per_token(tiny_rnn(), context=0, steps=2, repeats=1, warmup=0)
    assert r["median_ms"] > 0


@pytest.mark.parametrize("make", [tiny_transformer, tiny_rnn])
def test_scoring_tokens_per_s(make):
    r = scoring_tokens_per_s(make(), batch_size=2, seq_len=6, repeats=3, threads=1, warmup=1)
    assert_positive_summary(r, "tokens_per_s", 3)
    assert (r["batch_size"], r["seq_len"], r["repeats"], r["threads"]) == (2, 6, 3, 1)


def test_compare_variants_and_markdown():
    model = tiny_transformer().eval()
    variants = {"dense": fastest_dense(model), "int8": quantize_int8(model), "eager": model}
    r = compare_variants(variants, baseline="dense", threads=[1, 2], context=4, steps=2, repeats=3)
    assert r["baseline"] == "dense" and r["threads"] == [1, 2]
    assert r["flops_context_len"] == 4 + (2 + 1) // 2
    for name in variants:
        info = r["variants"][name]
        assert info["flops_per_token"] > 0 and info["flop_ratio"] == pytest.approx(1.0)
        assert info["size"]["size_bytes"] > 0
        for n in ("1", "2"):
            row = r["by_threads"][n][name]
            assert_positive_summary(row, "ms", 3)
            assert row["speedup"] > 0
    assert r["by_threads"]["1"]["dense"]["speedup"] == pytest.approx(1.0)
    assert (
        r["variants"]["int8"]["size"]["size_bytes"] < r["variants"]["dense"]["size"]["size_bytes"]
    )

    md = latency_markdown(r, {"cpu": "test-cpu", "cores": 2}, "prunekit bench latency")
    assert "| variant | ms/token (1 thread) | speed-up | FLOP ratio | speed-up / FLOP ratio" in md
    assert "ms/token (2 threads)" in md and "test-cpu" in md
    assert all(f"| `{name}` |" in md for name in variants)


def test_bad_inputs_are_user_errors():
    model = tiny_rnn()
    with pytest.raises(PrunekitError):
        compare_variants({"a": model}, baseline="b", repeats=1)
    with pytest.raises(PrunekitError):
        decode_ms_per_token(nn.Linear(2, 2), context=1, steps=1, repeats=1)
    with pytest.raises(PrunekitError):
        decode_ms_per_token(model, context=1, steps=0, repeats=1)
    with pytest.raises(PrunekitError):
        vocab_size_of(nn.Linear(2, 2))


def test_interleaved_orders_vary_who_runs_before_whom():
    from prunekit.bench.latency import interleaved_orders

    names = ["dense", "int8", "torch-int8", "floor"]
    orders = interleaved_orders(names, repeats=20, seed=0)
    assert len(orders) == 20 and all(sorted(o) == sorted(names) for o in orders)
    assert orders == interleaved_orders(names, repeats=20, seed=0)  # seeded
    for name in names:  # a rotated order would give every variant one fixed predecessor
        before = {o[o.index(name) - 1] for o in orders if o.index(name) > 0}
        assert len(before) >= 2
