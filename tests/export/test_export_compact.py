"""compact(): the compact fp32 model computes what the masked model computes (<= 1e-4), smaller."""

import copy

import pytest
import torch
from compact_helpers import (
    RNN_SCOPE,
    decoded,
    ids,
    logits,
    max_diff,
    pruned,
    tiny_rnn,
    tiny_transformer,
)
from torch import nn
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase as DynamicRNNBase

from prunekit.errors import PrunekitError
from prunekit.export import (
    CompactRNNLM,
    Int8Linear,
    Int8LowRankLinear,
    LinearRNN,
    LowRankEmbedding,
    LowRankLinear,
    SlicedLinear,
    SparseLinear,
)
from prunekit.export.compact import NEVER_PRUNED, compact
from prunekit.export.int8_choice import quantize_compact
from prunekit.export.sliced import TiedEmbedding
from prunekit.prune import ScopeConfig, finalize

FAST = {"repeats": 2}  # timing-based choices: any outcome is exact, keep them cheap


def assert_same_function(masked: nn.Module, small: nn.Module) -> None:
    idx = ids()
    ref = logits(masked, idx)
    assert max_diff(logits(small, idx), ref) <= 1e-4
    assert max_diff(decoded(small, idx), ref) <= 1e-4  # KV cache / recurrent state path too


def types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_unstructured_transformer_csr():
    masked = pruned(tiny_transformer(), "unstructured", 0.8)
    small, manifest = compact(masked, sparse="csr", **FAST)
    assert_same_function(masked, small)
    csr = [m for m in small.modules() if isinstance(m, SparseLinear)]
    assert csr and all(m.col_indices.dtype == torch.int32 for m in csr)
    assert all(r["kind"] == "sparse" for r in manifest["choices"].values())
    assert manifest["summary"]["flop_ratio"] > 1.5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unstructured_rnn_csr_gates(cell):
    masked = pruned(tiny_rnn(cell), "unstructured", 0.8, scope=RNN_SCOPE)
    small, manifest = compact(masked, sparse="csr", **FAST)
    assert_same_function(masked, small)
    assert isinstance(small.rnn, LinearRNN) and isinstance(small, CompactRNNLM)
    assert manifest["choices"]["rnn"]["kind"] == "sparse"


def test_unstructured_measured_choice_is_recorded():
    masked = pruned(tiny_rnn("gru"), "unstructured", 0.9, scope=RNN_SCOPE)
    small, manifest = compact(masked, **FAST)
    assert_same_function(masked, small)
    for name, record in manifest["choices"].items():
        assert record["kind"] in ("dense", "sparse")
        if record.get("ratio") is not None and name != "rnn":
            assert record["dense_us"] > 0 and record["sparse_us"] > 0
            assert isinstance(small.get_submodule(name), SparseLinear) == (
                record["kind"] == "sparse"
            )


def test_structured_transformer_heads_and_ffn_units():
    masked = pruned(tiny_transformer(), "structured", 0.5, scope=ScopeConfig(exclude_output=True))
    small, manifest = compact(masked, **FAST)
    assert_same_function(masked, small)
    attn, ffn = small.blocks[0].attn, small.blocks[0].ffn
    heads = next(r for r in manifest["structure"] if r["module"] == "blocks.0.attn")
    units = next(r for r in manifest["structure"] if r["module"] == "blocks.0.ffn")
    assert (heads["n"], len(heads["kept"])) == (4, 2) and attn.n_head == 2
    assert attn.q_proj.out_features == attn.out_proj.in_features == 2 * 4
    assert (units["n"], len(units["kept"])) == (32, 16) and ffn.fc_in.out_features == 16
    mask = masked.blocks[0].ffn.fc_out.parametrizations.weight[0].mask
    assert units["kept"] == mask.any(dim=0).nonzero().flatten().tolist()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("budget", ["layer", "global"])
def test_structured_rnn_units_gate_aware(cell, budget):
    masked = pruned(tiny_rnn(cell), "structured", 0.5, scope=RNN_SCOPE, budget=budget)
    small, manifest = compact(masked, **FAST, rnn_onednn=True, sparse="dense")  # no timed choice
    assert_same_function(masked, small)
    record = next(r for r in manifest["structure"] if r["module"] == "rnn")
    kept = max(len(k) for row in record["kept"] for k in row)
    gates = 4 if cell == "lstm" else 3
    assert isinstance(small.rnn, nn.LSTM if cell == "lstm" else nn.GRU)
    assert small.rnn.hidden_size == kept < 12 and small.rnn.num_layers == 2
    assert tuple(small.rnn.weight_ih_l1.shape) == (gates * kept, kept)
    assert small.lm_head.in_features == kept


def test_structured_rnn_with_tied_embeddings_and_projection():
    masked = pruned(
        tiny_rnn("lstm", tie_embeddings=True, d_hidden=10),
        "structured", 0.5, scope=ScopeConfig(module_types=("LSTM",)),
    )  # fmt: skip
    small, _ = compact(masked, **FAST)
    assert_same_function(masked, small)
    assert small.proj.in_features == small.rnn.hidden_size == 5
    assert small.embed.weight.shape == (23, 8)  # the tied embedding keeps its full width


class BiGRULM(nn.Module):
    """A model prunekit did not build: 3-layer bidirectional GRU read by `head`."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(23, 6)
        self.rnn = nn.GRU(6, 5, num_layers=3, batch_first=True, bidirectional=True)
        self.head = nn.Linear(10, 23)

    def forward(self, idx):
        return self.head(self.rnn(self.embed(idx))[0])


def test_structured_bidirectional_multilayer_rnn_of_any_model():
    masked = pruned(BiGRULM(), "structured", 0.5, scope=ScopeConfig(module_types=("GRU",)))
    small, _ = compact(masked, **FAST)
    idx = ids()
    assert max_diff(logits(small, idx), logits(masked, idx)) <= 1e-4
    assert small.rnn.hidden_size < 5 and small.head.in_features == 2 * small.rnn.hidden_size


def test_structured_rows_become_sliced_linears():
    masked = pruned(tiny_transformer(), "structured", 0.5, method_args={"granularity": "rows"})
    small, manifest = compact(masked, **FAST)
    assert_same_function(masked, small)
    assert isinstance(small.lm_head, SlicedLinear)
    assert any(r["kind"] == "rows_cols" for r in manifest["structure"])


def test_every_head_removed_keeps_one_and_stays_exact():
    masked = pruned(tiny_transformer(), "structured", 0.99, scope=ScopeConfig(exclude_output=True))
    small, _ = compact(masked, **FAST)
    assert_same_function(masked, small)
    assert small.blocks[0].attn.n_head == 1 and small.blocks[0].ffn.fc_in.out_features == 1


@pytest.mark.parametrize("tie", [False, True])
def test_factorized_linear_and_embedding(tie):
    masked = pruned(tiny_transformer(tie_embeddings=tie), "factorized", 0.6)
    small, manifest = compact(masked, **FAST)
    assert_same_function(masked, small)
    assert isinstance(small.lm_head, LowRankLinear)
    if tie:  # the embedding reads the output layer's factors: stored once
        assert isinstance(small.embed, TiedEmbedding) and small.embed.table is small.lm_head.U_t
        assert manifest["ties"] == [{"embedding": "embed", "output": "lm_head", "tied": True}]
    else:
        assert isinstance(small.embed, LowRankEmbedding)
    for r in manifest["factorized"]:
        a, b = r["shape"]
        assert (r["as"] == "lowrank") == (r["kept_rank"] * (a + b) < a * b)
        layer = small.get_submodule(r["module"])
        assert layer.rank == r["kept_rank"] if r["as"] == "lowrank" else True


def test_finalized_input_gives_the_same_model():
    masked = pruned(tiny_transformer(), "structured", 0.5)
    plain = finalize(copy.deepcopy(masked))
    fixed = {"sparse": "dense", "dense_layout": "transposed", **FAST}  # no timing-based choice
    a, _ = compact(masked, **fixed)
    b, _ = compact(plain, **fixed)
    idx = ids()
    assert torch.equal(logits(a, idx), logits(b, idx))


def test_int8_composes_ranks_zeros_and_units():
    factorized = pruned(tiny_transformer(), "factorized", 0.6)
    small, manifest = compact(factorized, int8=True, **FAST)
    ranks = {r["module"]: r["kept_rank"] for r in manifest["factorized"] if r["as"] == "lowrank"}
    for name, rank in ranks.items():
        layer = small.get_submodule(name)
        assert isinstance(layer, Int8LowRankLinear | LowRankEmbedding) and layer.rank == rank
    fp32, _ = compact(pruned(tiny_transformer(), "unstructured", 0.8), sparse="dense", **FAST)
    int8, _ = quantize_compact(fp32, repeats=2)
    fc = int8.blocks[0].ffn.fc_in
    assert isinstance(fc, Int8Linear)
    pruned_entries = fp32.blocks[0].ffn.fc_in.weight == 0
    assert bool((fc.weight().int_repr()[pruned_entries] == 0).all())  # zeros stay exactly zero
    rnn = pruned(tiny_rnn("lstm"), "structured", 0.5, scope=RNN_SCOPE)
    small, _ = compact(rnn, int8=True, **FAST)
    assert isinstance(small.rnn, DynamicRNNBase) and small.rnn.hidden_size == 6
    idx = ids()
    assert max_diff(decoded(small, idx), logits(rnn, idx)) < 0.05


def test_never_pruned_model_is_rejected():
    with pytest.raises(PrunekitError) as exc:
        compact(tiny_transformer())
    assert (
        str(exc.value)
        == NEVER_PRUNED
        == (
            "model was never pruned: prune it first (prunekit prune ...) or export the dense model "
            "with --dense"
        )
    )
    dense, manifest = compact(tiny_transformer(), dense=True, **FAST)
    assert manifest["pruned"] is False
    idx = ids()
    assert max_diff(logits(dense, idx), logits(tiny_transformer(), idx)) <= 1e-5


def test_input_model_is_not_modified():
    masked = pruned(tiny_rnn("lstm"), "structured", 0.5, scope=RNN_SCOPE)
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    compact(masked, **FAST)
    after = masked.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_int8_fastest_policy_times_each_layer_and_keeps_the_faster():
    masked = pruned(tiny_transformer(), "factorized", 0.6)
    fp32, _ = compact(masked, **FAST)
    small, records = quantize_compact(fp32, policy="fastest", repeats=2)
    assert records and all(set(r["us"]) >= {"fp32", "int8"} for r in records.values())
    for name, r in records.items():
        kept_fp32 = type(small.get_submodule(name)) is type(fp32.get_submodule(name))
        assert kept_fp32 == (r["kind"] == "fp32")
    with pytest.raises(PrunekitError, match="int8 policy='some' is unknown"):
        quantize_compact(fp32, policy="some")


def test_int8_of_a_plain_rnn_lm_still_decodes():
    fp32, _ = compact(tiny_rnn("lstm"), dense=True, **FAST)
    fp32.__class__ = type(tiny_rnn("lstm"))  # a plain RNNLM, as fastest_dense returns it
    small, _ = quantize_compact(fp32, repeats=2)
    assert isinstance(small, CompactRNNLM) and isinstance(small.rnn, DynamicRNNBase)
    assert max_diff(decoded(small, ids()), logits(fp32, ids())) < 0.05
