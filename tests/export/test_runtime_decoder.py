"""prunekit.runtime: the TorchScript decode step computes what TransformerLM.decode_step computes."""

import pytest
import torch
from compact_helpers import RNN_SCOPE, V, decoded, ids, max_diff, pruned, tiny_rnn, tiny_transformer
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export import fastest_dense
from prunekit.export.compact import compact
from prunekit.export.int8_choice import quantize_compact
from prunekit.prune import ScopeConfig
from prunekit.runtime import FastTransformerDecoder, fast_decoder
from prunekit.runtime.kernels import fused_kernel, linear_kernel

FAST = {"repeats": 2}
ALL_LINEARS = ScopeConfig(module_types=("Linear",))


def compact_variant(kind: str) -> nn.Module:
    base = tiny_transformer()
    if kind == "plain":
        return base
    if kind == "layout-rows":
        return fastest_dense(base, dense_layout="rows")
    if kind == "layout-transposed":
        return fastest_dense(base, dense_layout="transposed")
    if kind == "structured":
        return compact(pruned(base, "structured", 0.5), **FAST)[0]
    if kind == "factorized":
        return compact(pruned(base, "factorized", 0.6, scope=ALL_LINEARS), **FAST)[0]
    if kind == "factorized-embedding":
        scope = ScopeConfig(module_types=("Linear", "Embedding"))
        return compact(pruned(base, "factorized", 0.6, scope=scope), **FAST)[0]
    if kind == "csr":
        return compact(pruned(base, "unstructured", 0.8, scope=ALL_LINEARS), sparse="csr")[0]
    if kind == "int8":
        return quantize_compact(fastest_dense(base), policy="all", **FAST)[0]
    if kind == "factorized+int8":
        small = compact(pruned(base, "factorized", 0.6, scope=ALL_LINEARS), **FAST)[0]
        return quantize_compact(small, policy="all", **FAST)[0]
    raise AssertionError(kind)


KINDS = ["plain", "layout-rows", "layout-transposed", "structured", "factorized",
         "factorized-embedding", "csr", "int8", "factorized+int8"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scripted", [True, False])
def test_runtime_decoding_matches_the_model(kind: str, scripted: bool) -> None:
    model = compact_variant(kind)
    if kind == "factorized-embedding":
        assert type(model.embed).__name__ == "LowRankEmbedding"
    runtime = fast_decoder(model, scripted=scripted)
    assert isinstance(runtime, FastTransformerDecoder)
    idx = ids((2, 9))
    assert max_diff(decoded(runtime, idx), decoded(model, idx)) < 1e-5
    with torch.no_grad():  # a prompt of several tokens at once, then one more
        state = runtime.init_state(2)
        many, state = runtime.decode_step(idx[:, :6], state)
        one, _ = runtime.decode_step(idx[:, 6:7], state)
    # token by token: int8 quantizes each call's activations with their own scale
    assert max_diff(torch.cat([many, one], dim=1), decoded(model, idx[:, :7])) < 1e-5


def test_states_pass_between_runtime_and_model_and_branches_do_not_interfere() -> None:
    model = compact_variant("structured")
    runtime = fast_decoder(model)
    idx = ids((1, 8), seed=3)
    with torch.no_grad():
        ref = model(idx)
        state = model.init_state(1)
        _, state = model.decode_step(idx[:, :4], state)  # the model fills the cache ...
        a, branch = runtime.decode_step(idx[:, 4:6], state)  # ... the runtime continues it
        other, _ = runtime.decode_step(ids((1, 3), seed=9), state)  # a second branch
        b, branch = model.decode_step(idx[:, 6:8], branch)  # and back to the model
    assert max_diff(torch.cat([a, b], dim=1), ref[:, 4:8]) < 1e-4
    assert other.shape == (1, 3, V)


def test_runtime_covers_rnn_lms_by_their_own_decode_step_and_keeps_the_flop_count() -> None:
    rnn = compact(pruned(tiny_rnn(), "structured", 0.5, scope=RNN_SCOPE), **FAST)[0]
    assert fast_decoder(rnn) is rnn
    model = compact_variant("factorized")
    assert flops_per_token(fast_decoder(model), 5) == flops_per_token(model, 5)


def test_runtime_batched_scoring_is_the_models_forward() -> None:
    model = compact_variant("csr")
    idx = ids((2, 5))
    with torch.no_grad():
        assert torch.equal(fast_decoder(model)(idx), model(idx))


def test_fused_projection_of_one_kind_equals_the_three_layers() -> None:
    torch.manual_seed(0)
    layers = [nn.Linear(8, n) for n in (4, 6, 4)]
    x = torch.randn(3, 8)
    with torch.no_grad():
        for got, layer in zip(fused_kernel(layers)(x), layers, strict=True):
            assert max_diff(got, layer(x)) < 1e-6
        mixed = [layers[0], nn.Linear(8, 6, bias=False), layers[2]]
        for got, layer in zip(fused_kernel(mixed)(x), mixed, strict=True):
            assert max_diff(got, layer(x)) < 1e-6


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: tiny_transformer().train(), "model.eval()"),
        (lambda: pruned(tiny_transformer(), "unstructured", 0.5), "compact"),
        (lambda: nn.Linear(3, 3).eval(), "covers prunekit's"),
    ],
)
def test_runtime_rejects_what_it_cannot_run(make, message: str) -> None:
    with pytest.raises(PrunekitError, match=message):
        fast_decoder(make())


def test_linear_kernel_names_the_fix_for_a_masked_layer() -> None:
    masked = pruned(tiny_transformer(), "unstructured", 0.5)
    with pytest.raises(PrunekitError, match="export the model"):
        linear_kernel(masked.lm_head)


def test_runtime_decodes_a_saved_and_loaded_int8_export(tmp_path) -> None:
    from prunekit.export import load_compact, save_compact

    small, manifest = compact(pruned(tiny_transformer(), "structured", 0.5), int8=True, **FAST)
    save_compact(small, manifest, tmp_path / "out")
    loaded = load_compact(tmp_path / "out").eval()
    idx = ids((1, 6))
    assert max_diff(decoded(fast_decoder(loaded), idx), decoded(small, idx)) < 1e-5


def test_sliced_kernel_gathers_columns_and_scatters_rows_like_the_layer() -> None:
    from prunekit.export.sliced import SlicedLinear

    torch.manual_seed(0)
    lin = nn.Linear(6, 5)
    rows, cols = torch.tensor([0, 3, 4]), torch.tensor([1, 2, 5])
    sliced = SlicedLinear.from_linear(lin, rows, cols)
    x = torch.randn(3, 6)
    with torch.no_grad():
        assert max_diff(linear_kernel(sliced)(x), sliced(x)) < 1e-6
        assert max_diff(linear_kernel(SlicedLinear.from_linear(lin, None, cols))(x),
                        SlicedLinear.from_linear(lin, None, cols)(x)) < 1e-6  # fmt: skip
