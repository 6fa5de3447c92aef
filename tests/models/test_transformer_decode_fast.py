"""Incremental decoding of TransformerLM (preallocated KV buffers, single-token fast path).

decode_step must equal forward whatever the chunking, batch, length (past max_rel_pos and past the
initial buffer capacity) and projection modules, and a state must stay valid however it is
branched. No timings are asserted here.
"""

import pytest
import torch
from torch import nn

from prunekit.export.layers import DenseLinear, LowRankLinear, SparseLinear
from prunekit.models import TransformerLM, TransformerLMConfig
from prunekit.models.transformer_lm import MIN_CACHE_CAPACITY

V = 29


def tiny(**overrides) -> TransformerLM:
    kw = dict(vocab_size=V, d_model=16, n_layer=2, n_head=2, d_ff=24, max_rel_pos=3, dropout=0.0)
    kw.update(overrides)
    torch.manual_seed(0)
    return TransformerLM(TransformerLMConfig(**kw)).eval()


def tokens(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def decode_chunks(m: TransformerLM, x: torch.Tensor, chunks: list[int], state=None):
    state = m.init_state(x.size(0)) if state is None else state
    outs, t = [], state.pos
    for n in chunks:
        logits, state = m.decode_step(x[:, t : t + n], state)
        outs.append(logits)
        t += n
    return torch.cat(outs, 1), state


def kv_clone(state) -> list:
    return [None if kv is None else (kv[0].clone(), kv[1].clone()) for kv in state.kv]


def assert_kv_equal(kv: list, state) -> None:
    assert len(kv) == len(state.kv)
    for a, b in zip(kv, state.kv, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b[0], a[0], atol=0, rtol=0)
            torch.testing.assert_close(b[1], a[1], atol=0, rtol=0)


@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize(
    "chunks",
    [[1] * 12, [12], [5, 1, 1, 5], [1, 6, 1, 1, 3], [2] * 6],
    ids=["tokens", "one", "mixed", "single-then-chunk", "pairs"],
)
@pytest.mark.parametrize("mode", ["no_grad", "inference"])
def test_decode_matches_forward_past_max_rel_pos(B, chunks, mode):
    m = tiny(max_rel_pos=3)
    x = tokens(B, sum(chunks))
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        full = m(x)
        dec, state = decode_chunks(m, x, chunks)
    assert state.pos == x.size(1)
    torch.testing.assert_close(dec, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("B", [1, 2])
def test_decode_grows_past_initial_capacity(B):
    m = tiny(max_rel_pos=5)
    T = MIN_CACHE_CAPACITY + 70
    x = tokens(B, T, seed=3)
    chunks = [MIN_CACHE_CAPACITY - 2] + [1] * 4 + [T - MIN_CACHE_CAPACITY - 2]
    with torch.inference_mode():
        full = m(x)
        dec, state = decode_chunks(m, x, chunks)
    torch.testing.assert_close(dec, full, atol=1e-5, rtol=1e-5)
    assert state.cache.capacity >= T
    assert [kv[0].shape for kv in state.kv] == [(B, 2, T, 8)] * 2


def test_state_kv_views_have_forward_layout():
    m = tiny(n_head=4)  # d_head 4
    with torch.no_grad():
        _, s = decode_chunks(m, tokens(2, 5), [3, 1, 1])
    assert [tuple(k.shape) for k, _ in s.kv] == [(2, 4, 5, 4)] * 2
    assert m.init_state(2).kv == []


@pytest.mark.parametrize("mode", ["no_grad", "inference"])
def test_branching_keeps_every_state_valid(mode):
    m = tiny(max_rel_pos=2)
    prefix = tokens(1, 6)
    a, b = torch.tensor([[3, 4, 5, 6]]), torch.tensor([[7, 8, 9, 1]])
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        _, s = m.decode_step(prefix, m.init_state(1))
        kv_s = kv_clone(s)
        la, sa = m.decode_step(a[:, :1], s)  # appends in place to s's buffers
        kv_sa = kv_clone(sa)
        lb, sb = m.decode_step(b[:, :1], s)  # branch: must not clobber sa
        la2, _ = m.decode_step(a[:, :1], s)  # and again
        # Continue both branches token by token, interleaved, then a third one from s.
        out_a, out_b = [la], [lb]
        for t in range(1, 4):
            step, sa = m.decode_step(a[:, t : t + 1], sa)
            out_a.append(step)
            step, sb = m.decode_step(b[:, t : t + 1], sb)
            out_b.append(step)
        lc, _ = m.decode_step(b[:, :2], s)
        full_a = m(torch.cat([prefix, a], 1))[:, 6:]
        full_b = m(torch.cat([prefix, b], 1))[:, 6:]
    torch.testing.assert_close(la2, la, atol=0, rtol=0)
    torch.testing.assert_close(torch.cat(out_a, 1), full_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(out_b, 1), full_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lc, full_b[:, :2], atol=1e-5, rtol=1e-5)
    assert s.pos == 6
    assert_kv_equal(kv_s, s)
    assert len(kv_sa) == 2 and all(kv[0].size(2) == 7 for kv in kv_sa)


def test_older_state_after_growth_and_branch_of_grown_state():
    m = tiny()
    x = tokens(2, MIN_CACHE_CAPACITY + 20, seed=5)
    n0 = MIN_CACHE_CAPACITY - 1
    with torch.no_grad():
        full = m(x)
        _, s0 = m.decode_step(x[:, :n0], m.init_state(2))
        kv0 = kv_clone(s0)
        _, s1 = m.decode_step(x[:, n0 : n0 + 5], s0)  # grows: a new, larger cache
        assert s1.cache is not s0.cache
        l0, _ = m.decode_step(x[:, n0 : n0 + 1], s0)  # the old state still decodes
        l1, _ = m.decode_step(x[:, n0 + 5 : n0 + 6], s1)
        l1b, _ = m.decode_step(x[:, n0 + 5 : n0 + 6], s1)  # branch of the grown state
    assert_kv_equal(kv0, s0)
    torch.testing.assert_close(l0, full[:, n0 : n0 + 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(l1, full[:, n0 + 5 : n0 + 6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(l1b, l1, atol=0, rtol=0)


def test_inference_state_continues_outside_inference_mode():
    m = tiny()
    x = tokens(2, 9)
    with torch.inference_mode():
        _, s = m.decode_step(x[:, :4], m.init_state(2))
    with torch.no_grad():
        dec, _ = decode_chunks(m, x, [1] * 5, state=s)
        full = m(x)
    torch.testing.assert_close(dec, full[:, 4:], atol=1e-5, rtol=1e-5)


def test_decode_with_autograd_matches_forward_gradients():
    m = tiny(max_rel_pos=2)
    x = tokens(2, 7)
    dec, _ = decode_chunks(m, x, [1, 1, 3, 1, 1])
    g = torch.randn(dec.shape, generator=torch.Generator().manual_seed(0))
    (dec * g).sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    full = m(x)
    (full * g).sum().backward()
    torch.testing.assert_close(dec, full, atol=1e-5, rtol=1e-5)
    for n, p in m.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)
    assert grads["blocks.0.attn.rel_k.weight"].abs().sum() > 0


@pytest.mark.parametrize("B", [1, 2])
def test_fewer_heads_per_layer_decodes_like_its_forward(B):
    m = tiny(n_layer=3, n_head=4, max_rel_pos=3)  # d_head 4
    for layer, heads in [(0, 2), (2, 1)]:
        attn = m.blocks[layer].attn
        torch.manual_seed(layer)
        attn.q_proj, attn.k_proj, attn.v_proj = (nn.Linear(16, heads * 4) for _ in range(3))
        attn.out_proj = nn.Linear(heads * 4, 16)
    assert [b.attn.n_head for b in m.blocks] == [2, 4, 1]
    x = tokens(B, 11)
    with torch.no_grad():
        full = m(x)
        by_token, s = decode_chunks(m, x, [1] * 11)
        chunked, _ = decode_chunks(m, x, [4, 1, 6])
    torch.testing.assert_close(by_token, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)
    assert [kv[0].size(1) for kv in s.kv] == [2, 4, 1]


@pytest.mark.parametrize("kind", ["dense", "dense_rows", "lowrank", "sparse"])
@pytest.mark.parametrize("B", [1, 2])
def test_compact_projection_modules_decode_like_forward(kind, B):
    m = tiny(max_rel_pos=2)
    for block in m.blocks:
        for parent, names in [
            (block.attn, ["q_proj", "k_proj", "v_proj", "out_proj"]),
            (block.ffn, ["fc_in", "fc_out"]),
        ]:
            for name in names:
                lin = getattr(parent, name)
                if kind == "sparse":
                    with torch.no_grad():
                        lin.weight[lin.weight.abs() < 0.015] = 0.0
                new = {
                    "dense": lambda lin: DenseLinear.from_linear(lin),
                    "dense_rows": lambda lin: DenseLinear.from_linear(lin, transposed=False),
                    "lowrank": lambda lin: LowRankLinear.from_linear(lin, 3),
                    "sparse": lambda lin: SparseLinear.from_linear(lin),
                }[kind](lin)
                setattr(parent, name, new)
    x = tokens(B, 8)
    with torch.inference_mode():
        full = m(x)
        by_token, _ = decode_chunks(m, x, [1] * 8)
        chunked, _ = decode_chunks(m, x, [3, 1, 4])
    torch.testing.assert_close(by_token, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)


def test_block_forward_with_past_still_works():
    # The export code reaches CausalSelfAttention.forward(x, pos, past) through Block.
    m = tiny()
    x = tokens(2, 6)
    with torch.no_grad():
        h = m.embed(x)
        y_full, _ = m.blocks[0](h)
        y_a, kv = m.blocks[0](h[:, :4])
        y_b, kv2 = m.blocks[0](h[:, 4:], 4, kv)
    torch.testing.assert_close(torch.cat([y_a, y_b], 1), y_full, atol=1e-5, rtol=1e-5)
    assert kv2[0].shape == (2, 2, 6, 8)


def test_decode_without_cached_index_attribute():
    # A module unpickled from before the decode cache existed lacks the attribute.
    m = tiny()
    for block in m.blocks:
        del block.attn._ramp
    x = tokens(1, 6)
    with torch.no_grad():
        dec, _ = decode_chunks(m, x, [2, 1, 1, 1, 1])
        full = m(x)
    torch.testing.assert_close(dec, full, atol=1e-5, rtol=1e-5)


def test_max_rel_pos_change_rebuilds_index():
    m = tiny(max_rel_pos=4)
    x = tokens(1, 10)
    with torch.no_grad():
        decode_chunks(m, x, [1] * 10)
        for block in m.blocks:  # a smaller relative table (k = 2) on the same modules
            block.attn.rel_k = nn.Embedding(3, 8)
        dec, _ = decode_chunks(m, x, [1] * 10)
        full = m(x)
    torch.testing.assert_close(dec, full, atol=1e-5, rtol=1e-5)


def test_state_dict_unchanged_by_decoding():
    m = tiny()
    keys = set(m.state_dict())
    with torch.no_grad():
        decode_chunks(m, tokens(1, 5), [1] * 5)
    assert set(m.state_dict()) == keys
