"""Batch-1 decoding runtime for (compact) `TransformerLM`s: the decode step as one TorchScript call.

On this CPU an eager decode step of a 6-layer model spends ~2-3 ms per token in Python and
dispatch (module calls, attribute lookups, shape checks, views) before any arithmetic: more than
the matmuls of a model pruned to 10 %. `FastTransformerDecoder` reads the trained tensors of a
`TransformerLM` (dense, or compact from `prunekit.export`: smaller heads/FFN, low-rank, CSR, int8)
into flat kernels (`prunekit.runtime.kernels`) and runs each token through a TorchScript
`TransformerCore.step`: per layer, LayerNorm -> q/k/v kernels -> write the KV cache -> relative
bias + scores in two matmuls -> softmax -> mix -> output kernel -> residual, LayerNorm -> FFN
kernels -> residual. The arithmetic is `TransformerLM.decode_step`'s (same cache layout, same
states: the two can continue each other's states), so logits match it to float rounding.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.models.rnn_lm import RNNLM
from prunekit.models.transformer_lm import (
    TransformerLM,
    TransformerState,
    check_decode_input,
    writable_cache,
)
from prunekit.runtime.kernels import embedding_kernel, fused_kernel, linear_kernel, script


def _norm_params(ln: nn.LayerNorm) -> tuple[Tensor | None, Tensor | None, float, int]:
    w = None if ln.weight is None else ln.weight.detach()
    b = None if ln.bias is None else ln.bias.detach()
    return w, b, float(ln.eps), int(ln.normalized_shape[0])


class RuntimeBlock(nn.Module):
    """One pre-LN block for one new token per sequence: x (B, C) at position `pos` -> (B, C)."""

    ln1_w: Tensor | None
    ln1_b: Tensor | None
    ln2_w: Tensor | None
    ln2_b: Tensor | None

    def __init__(self, block: nn.Module):
        super().__init__()
        attn, ffn = block.attn, block.ffn
        self.ln1_w, self.ln1_b, self.ln1_eps, width = _norm_params(block.ln_attn)
        self.ln2_w, self.ln2_b, self.ln2_eps, _ = _norm_params(block.ln_ffn)
        self.width = [width]
        self.qkv = fused_kernel([attn.q_proj, attn.k_proj, attn.v_proj])
        self.out = linear_kernel(attn.out_proj)
        self.fc_in, self.fc_out = linear_kernel(ffn.fc_in), linear_kernel(ffn.fc_out)
        self.d_head = int(attn.d_head)
        self.n_head = int(attn.n_head)
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.rel_t = attn.rel_k.weight.detach().t().contiguous()  # (D, k+1)
        act = ffn.act
        if isinstance(act, nn.GELU):
            self.gelu, self.approximate = True, act.approximate
        elif isinstance(act, nn.ReLU):
            self.gelu, self.approximate = False, "none"
        else:
            raise PrunekitError(
                f"the decode runtime supports GELU and ReLU FFNs, not {type(act).__name__}: "
                "decode with TransformerLM.decode_step instead"
            )

    def forward(self, x: Tensor, pos: int, dist: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """x (B, C); dist (S,) clipped distances of keys 0..pos; keys/values (B, H, cap, D)."""
        B, D, H, S = x.size(0), self.d_head, self.n_head, pos + 1
        h = F.layer_norm(x, self.width, self.ln1_w, self.ln1_b, self.ln1_eps)
        q, k, v = self.qkv(h)  # each (B, H*D)
        keys.select(2, pos).copy_(k.view(B, H, D))
        values.select(2, pos).copy_(v.view(B, H, D))
        qh = q.reshape(B * H, D)
        bias = torch.mm(qh, self.rel_t).index_select(1, dist)  # (BH, S): q . a_{d_j}
        scores = torch.baddbmm(
            bias.view(B * H, 1, S),
            qh.view(B * H, 1, D),
            keys.view(B * H, -1, D).narrow(1, 0, S).transpose(1, 2),
            beta=self.scale,
            alpha=self.scale,
        )  # (BH, 1, S)
        p = torch.softmax(scores, dim=-1)
        y = torch.bmm(p, values.view(B * H, -1, D).narrow(1, 0, S)).view(B, H * D)
        x = x + self.out(y)
        h = F.layer_norm(x, self.width, self.ln2_w, self.ln2_b, self.ln2_eps)
        h = self.fc_in(h)
        h = F.gelu(h, approximate=self.approximate) if self.gelu else torch.relu(h)
        return x + self.fc_out(h)


class TransformerCore(nn.Module):
    """Embedding -> RuntimeBlocks -> final LayerNorm -> output kernel, token by token."""

    lnf_w: Tensor | None
    lnf_b: Tensor | None

    def __init__(self, model: TransformerLM):
        super().__init__()
        self.embed = embedding_kernel(model.embed)
        self.blocks = nn.ModuleList([RuntimeBlock(b) for b in model.blocks])
        self.lnf_w, self.lnf_b, self.lnf_eps, width = _norm_params(model.ln_f)
        self.width = [width]
        self.head = linear_kernel(model.lm_head)
        spans = {b.attn.rel_k.num_embeddings - 1 for b in model.blocks}
        if len(spans) != 1:
            raise PrunekitError(
                f"blocks clip relative distances differently ({sorted(spans)}): the decode "
                "runtime needs one max_rel_pos; decode with TransformerLM.decode_step instead"
            )
        self.max_rel = spans.pop()

    @torch.jit.export
    def step(self, idx: Tensor, pos: int, keys: list[Tensor], values: list[Tensor]) -> Tensor:
        """idx (B, T) at positions pos..pos+T-1 -> logits (B, T, V); writes the caches."""
        logits: list[Tensor] = []
        for t in range(idx.size(1)):
            p = pos + t
            dist = torch.arange(p, -1, -1).clamp_(max=self.max_rel)  # (p+1,)
            x = self.embed(idx[:, t])  # (B, C)
            for i, block in enumerate(self.blocks):
                x = block(x, p, dist, keys[i], values[i])
            x = F.layer_norm(x, self.width, self.lnf_w, self.lnf_b, self.lnf_eps)
            logits.append(self.head(x))
        if len(logits) == 1:
            return logits[0].unsqueeze(1)
        return torch.stack(logits, dim=1)


class FastTransformerDecoder(nn.Module):
    """A `TransformerLM` (dense or compact) whose `decode_step` runs through `TransformerCore`.

    `forward(idx)` (batched scoring) and `init_state` are the wrapped model's; states are
    `TransformerState`s with the model's KV cache, so they can be passed back and forth.
    """

    def __init__(self, model: TransformerLM, *, scripted: bool = True):
        """Args: model, in eval mode; scripted: compile the core with TorchScript (False: run the
        same core eagerly). The kernels share the model's tensors, except fused q/k/v weights and
        the transposed relative-position tables, which are copies made here: rebuild the runtime
        after changing the model's weights.

        Raises:
            PrunekitError: the model is in training mode or has a layer without a kernel.
        """
        super().__init__()
        if model.training:
            raise PrunekitError(
                "the decode runtime is for inference: call model.eval() before building it"
            )
        self.model = model
        self.config = model.config
        core = TransformerCore(model)
        self.heads = [b.n_head for b in core.blocks]
        self.d_head = [b.d_head for b in core.blocks]
        self.core = script(core) if scripted else core

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B, T) -> logits (B, T, V), the wrapped model's batched path."""
        return self.model(idx)

    def init_state(self, batch_size: int) -> TransformerState:
        return self.model.init_state(batch_size)

    def flops_per_token(self, context_len: int) -> int:
        """The wrapped model's FLOPs (the runtime runs the same arithmetic)."""
        from prunekit.eval.flops import flops_per_token

        return flops_per_token(self.model, context_len)

    def decode_step(self, idx: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """As `TransformerLM.decode_step`: idx (B, T_new) -> logits (B, T_new, V), a new state."""
        check_decode_input(idx, state)
        pos, T = state.pos, idx.size(1)
        cache = writable_cache(state, pos + T, len(self.heads))
        for i, (H, D) in enumerate(zip(self.heads, self.d_head, strict=True)):
            if cache.keys[i] is None or cache.values[i] is None:
                B, cap = state.batch_size, cache.capacity
                cache.keys[i] = torch.empty(B, H, cap, D)
                cache.values[i] = torch.empty(B, H, cap, D)
        logits = self.core.step(idx, pos, cache.keys, cache.values)
        cache.length = pos + T
        return logits, TransformerState(state.batch_size, pos + T, cache)


def fast_decoder(model: nn.Module, *, scripted: bool = True) -> nn.Module:
    """The fastest batch-1 decoder prunekit has for `model`: a `FastTransformerDecoder` for a
    (compact) `TransformerLM`; an RNN LM (`RNNLM` and its compact/int8 forms) as it is, since its
    decode step is already one fused cell call per layer plus the output layer.

    Raises:
        PrunekitError: a model the runtime does not cover (see `FastTransformerDecoder`).
    """
    if isinstance(model, TransformerLM):
        return FastTransformerDecoder(model, scripted=scripted)
    if isinstance(model, RNNLM):
        return model
    raise PrunekitError(
        f"no decode runtime for {type(model).__name__}: fast_decoder covers prunekit's "
        "TransformerLM and RNNLM (dense or compact)"
    )
