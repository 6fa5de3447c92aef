"""compact() of factored (W = U V) Linears and LSTM/GRU gate stacks: two thin matmuls per gate
stack, bidirectional and packed sequences, composed with CSR and int8; outputs match."""

import copy

import pytest
import torch
from compact_helpers import ids, logits, max_diff, tiny_rnn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from prunekit.eval.flops import flops_per_token
from prunekit.export import LowRankLinear, SparseLinear, load_compact, save_compact
from prunekit.export.bidir_rnn import BiLinearRNN
from prunekit.export.compact import compact
from prunekit.export.layers import DenseLinear, Int8LowRankLinear
from prunekit.export.linear_rnn import LinearRNN
from prunekit.export.lowrank_rnn import lowrank_rnn
from prunekit.export.manifest import check_layers, layer_records
from prunekit.export.records import BY_KIND
from prunekit.export.shrink import set_module
from prunekit.lowrank import factorize, full_rank_plan, select_matrices
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_
from rnn_standins import Stack

FAST = {"sparse": "dense", "dense_layout": "transposed", "rnn_onednn": False, "repeats": 2}


def _factored_stack(cell, bidirectional=False, rank=3):
    torch.manual_seed(0)
    model = Stack(cell, bidirectional=bidirectional, hidden=16, d=16).eval()
    plan = {m.name: min(rank, *m.shape) for m in select_matrices(model)}
    plan["input.weight"] = 6  # full rank of a (16, 6) matrix: not smaller, stays dense
    return factorize(model, plan).requires_grad_(False)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_factored_gate_stacks_become_two_thin_matmuls_with_the_same_outputs(cell):
    model = _factored_stack(cell)
    x = torch.randn(2, 9, 6)
    fast, manifest = compact(model, **FAST)
    assert max_diff(fast(x), model(x)) < 1e-5
    assert isinstance(fast.rnn, LinearRNN)
    for layer in [*fast.rnn.ih, *fast.rnn.hh]:
        assert isinstance(layer, LowRankLinear) and layer.rank == 3
    assert isinstance(fast.head, LowRankLinear)
    assert not isinstance(fast.input, LowRankLinear)  # rank 6 of (16, 6) is not smaller
    records = {r["module"]: r for r in manifest["lowrank"]}
    assert records["rnn"]["matrices"]["weight_hh_l1"] == {
        "shape": [48 if cell == "gru" else 64, 16],
        "rank": 3,
        "factored": True,
        "as": "lowrank",
    }
    assert records["input"]["as"] == "dense"
    assert flops_per_token(fast, 1) < flops_per_token(Stack(cell, hidden=16, d=16), 1) / 2


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bidirectional_packed_sequences_match_torch(cell):
    model = _factored_stack(cell, bidirectional=True, rank=4)
    rnn, records = lowrank_rnn(model.rnn)
    assert isinstance(rnn, BiLinearRNN) and len(records) == 8
    x = torch.randn(3, 7, 16)
    lengths = torch.tensor([7, 3, 5])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        want, want_h = model.rnn(packed)
        got, got_h = rnn(packed)
        want, _ = pad_packed_sequence(want, batch_first=True)
        got, _ = pad_packed_sequence(got, batch_first=True)
        assert max_diff(got, want) < 1e-5
        hs = (got_h, want_h) if cell == "gru" else (got_h[0], want_h[0])
        assert max_diff(*hs) < 1e-5  # every sequence's final state, both directions
        dense_out, _ = model.rnn(x)  # unpacked input: all sequences full length
        assert max_diff(rnn(x)[0], dense_out) < 1e-5


def test_compact_bidirectional_stack_and_its_int8():
    model = _factored_stack("gru", bidirectional=True)
    x = torch.randn(2, 5, 6)
    fast, _ = compact(model, **FAST)
    assert isinstance(fast.rnn, BiLinearRNN)
    assert max_diff(fast(x), model(x)) < 1e-5
    q, _ = compact(model, int8=True, **FAST)
    assert all(isinstance(m, Int8LowRankLinear) for m in q.rnn.hh)
    assert max_diff(q(x), model(x)) < 0.05 * float(model(x).abs().max())


def test_lowrank_composes_with_csr_and_int8_in_one_rnn():
    torch.manual_seed(0)
    model = Stack("lstm", hidden=16, d=16).eval()
    hh = ScopeConfig(module_types=("LSTM",), include=("rnn.weight_hh_*",))
    prune_(model, PruneConfig(schedule=OneShot(sparsity=0.8), scope=hh))
    factorize(model, {"rnn.weight_ih_l0": 3, "rnn.weight_ih_l1": 3}).requires_grad_(False)
    x = torch.randn(2, 6, 6)
    fast, _ = compact(model, **{**FAST, "sparse": "csr"})
    assert max_diff(fast(x), model(x)) < 1e-5
    assert all(isinstance(m, LowRankLinear) for m in fast.rnn.ih)
    assert all(isinstance(m, SparseLinear) for m in fast.rnn.hh)
    q, _ = compact(model, int8=True, **{**FAST, "sparse": "csr"})
    assert max_diff(q(x), model(x)) < 0.05 * float(model(x).abs().max())


def test_factored_lstm_lm_decodes_and_saves(tmp_path):
    model = tiny_rnn("lstm")
    plan = full_rank_plan(select_matrices(model, ScopeConfig(module_types=("LSTM",))))
    factorize(model, {name: 2 for name in plan})
    idx = ids()
    fast, manifest = compact(model, **FAST)
    assert isinstance(fast.rnn, LinearRNN)
    assert all(isinstance(m, LowRankLinear) for m in [*fast.rnn.ih, *fast.rnn.hh])
    assert isinstance(fast.lm_head, DenseLinear)  # not factored
    assert max_diff(logits(fast, idx), logits(model, idx)) < 1e-5
    state = fast.init_state(2)
    step, _ = fast.decode_step(idx[:, :1], state)
    assert max_diff(step[:, 0], logits(model, idx[:, :1])[:, 0]) < 1e-5
    save_compact(fast, manifest, tmp_path / "export")
    loaded = load_compact(tmp_path / "export")
    assert max_diff(logits(loaded, idx), logits(fast, idx)) == 0.0


def test_bilinear_rnn_round_trips_through_the_compact_format():
    model = _factored_stack("gru", bidirectional=True)
    fast, _ = compact(model, **FAST)
    records, tensors = layer_records(fast)
    assert records["rnn"]["kind"] == "bilinear_rnn"
    assert records["rnn.hh_reverse.1"]["kind"] == "lowrank"
    check_layers(records, tensors)
    rebuilt = copy.deepcopy(fast)
    for path, rec in records.items():  # as prunekit.export.manifest.build does
        fields = {k[len(path) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{path}.")}
        set_module(rebuilt, path, BY_KIND[rec["kind"]].build(rec, fields))
    assert isinstance(rebuilt.rnn, BiLinearRNN) and rebuilt.rnn is not fast.rnn
    x = torch.randn(2, 5, 6)
    assert max_diff(rebuilt(x), fast(x)) == 0.0
