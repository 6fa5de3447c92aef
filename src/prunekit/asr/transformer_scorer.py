"""`TransformerScorer`: the `LMScorer` adapter for Transformer LMs, many histories in one call.

A decoding step asks for words after histories of different lengths. The model's relative
positions make this exact with padding: attention bias depends only on the distance i - j, so the
cached keys and values of every history are left-padded to the longest one (pad keys masked out),
the new tokens are right-padded after them (causal, so padding after a row's last token changes
nothing before it), and each query sees the same distances as in `TransformerLM.decode_step`.

A state's cache is its keys and values, (S, W) with all layers side by side
([k_0 | v_0 | k_1 | v_1 | ...], layer l's k and v H_l * d_head wide), so stacking a batch of
histories is one copy per history.

The layer arithmetic goes through `_LayerOps`: the model's own modules (dense, masked through
parametrizations, or compact layers from `prunekit.export`), or the kernels of a
`FastTransformerDecoder` (fused q/k/v, the layouts `compact` chose); the attention math is shared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.asr.lm_scorer import LMState, StartCache, check_eval, gather_scores, padded
from prunekit.models.transformer_lm import TransformerLM
from prunekit.runtime import FastTransformerDecoder

Fn = Callable[[Tensor], Tensor]


@dataclass
class _LayerOps:
    """One block's arithmetic on (N, C) rows."""

    ln1: Fn
    qkv: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
    out: Fn
    ln2: Fn
    ffn: Fn
    rel_w: Tensor  # (k+1, d_head)
    n_head: int
    d_head: int


def _eager_layer(block: nn.Module) -> _LayerOps:
    attn = block.attn

    def qkv(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)

    return _LayerOps(
        block.ln_attn, qkv, attn.out_proj, block.ln_ffn, block.ffn,
        attn.rel_k.weight, int(attn.n_head), int(attn.d_head),
    )  # fmt: skip


def _layer_norm(width: list[int], w: Tensor | None, b: Tensor | None, eps: float) -> Fn:
    return lambda x: F.layer_norm(x, width, w, b, eps)


def _runtime_layer(rb: nn.Module) -> _LayerOps:
    def ffn(h: Tensor) -> Tensor:
        h = rb.fc_in(h)
        h = F.gelu(h, approximate=rb.approximate) if rb.gelu else torch.relu(h)
        return rb.fc_out(h)

    return _LayerOps(
        _layer_norm(list(rb.width), rb.ln1_w, rb.ln1_b, float(rb.ln1_eps)), rb.qkv, rb.out,
        _layer_norm(list(rb.width), rb.ln2_w, rb.ln2_b, float(rb.ln2_eps)), ffn,
        rb.rel_t.t(), int(rb.n_head), int(rb.d_head),
    )  # fmt: skip


class TransformerScorer(StartCache):
    """`LMScorer` over a `TransformerLM` (dense, masked or compact) or a `FastTransformerDecoder`."""

    def __init__(self, model: TransformerLM | FastTransformerDecoder, *, eos_id: int = 1):
        """Args: model, in eval mode; eos_id, the sentence separator of its tokenizer.

        Raises:
            PrunekitError: the model is in training mode.
        """
        if isinstance(model, FastTransformerDecoder):
            check_eval(model.model)
            core = model.core
            self.layers = [_runtime_layer(rb) for rb in core.blocks]
            self.embed: Fn = core.embed
            self.final: Fn = _layer_norm(list(core.width), core.lnf_w, core.lnf_b, core.lnf_eps)
            self.head: Fn = core.head
        else:
            check_eval(model)
            self.layers = [_eager_layer(b) for b in model.blocks]
            self.embed, self.final, self.head = model.embed, model.ln_f, model.lm_head
        self.model = model
        self.vocab_size = int(model.config.vocab_size)
        self.eos_id = int(eos_id)
        widths = [2 * op.n_head * op.d_head for op in self.layers]
        self.offsets = [sum(widths[:i]) for i in range(len(widths))]
        self.width = sum(widths)

    def _empty(self) -> LMState:
        return LMState(torch.zeros(self.vocab_size), torch.zeros(0, self.width), 0)

    @torch.inference_mode()
    def advance(
        self, states: Sequence[LMState], tokens: Sequence[Sequence[int]]
    ) -> tuple[Tensor, list[LMState]]:
        ids, lengths = padded(tokens)
        caches = [s.cache for s in states]
        past = torch.nn.utils.rnn.pad_sequence(caches, batch_first=True, padding_side="left")
        history = torch.tensor([c.size(0) for c in caches])
        logp, new_kv = self._step(past, history, ids)
        prev = torch.stack([s.log_probs for s in states])  # (B, V)
        scores, last = gather_scores(prev, logp, ids, lengths)
        out = [
            LMState(last[i], torch.cat([c, new_kv[i, :n]]), s.length + n)
            for i, (s, c, n) in enumerate(zip(states, caches, lengths.tolist(), strict=True))
        ]
        return scores, out

    def _step(self, past: Tensor, history: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        """past (B, S, W) left-padded caches of `history` (B,) lengths; ids (B, L) right-padded.

        Returns (log-probs (B, L, V) after each token, the new tokens' keys/values (B, L, W)).
        """
        B, S, _ = past.shape
        L = ids.size(1)
        x = self.embed(ids.reshape(-1))  # (B*L, C)
        dist = (S + torch.arange(L))[:, None] - torch.arange(S + L)[None, :]  # (L, S+L)
        visible = torch.cat(
            [
                (torch.arange(S)[None, :] >= (S - history)[:, None])[:, None, :].expand(B, L, S),
                (dist[:, S:] >= 0).expand(B, L, L),
            ],
            dim=-1,
        )  # (B, L, S+L): a real past key, or a new key at or before the query
        mask = torch.zeros(B, 1, L, S + L).masked_fill(~visible[:, None], float("-inf"))
        new_kv = []
        for op, off in zip(self.layers, self.offsets, strict=True):
            H, D = op.n_head, op.d_head
            q, k, v = op.qkv(op.ln1(x))  # each (B*L, H*D)
            new_kv += [k, v]
            keys = torch.cat([past[..., off : off + H * D], k.view(B, L, H * D)], dim=1)
            values = torch.cat([past[..., off + H * D : off + 2 * H * D], v.view(B, L, H * D)], 1)
            keys = keys.view(B, S + L, H, D).transpose(1, 2)  # (B, H, S+L, D)
            values = values.view(B, S + L, H, D).transpose(1, 2)  # (B, H, S+L, D)
            qh = q.reshape(B, L, H, D).transpose(1, 2)  # (B, H, L, D)
            index = dist.clamp(0, op.rel_w.size(0) - 1).expand(B, H, L, S + L)
            scale = 1.0 / math.sqrt(D)
            bias = (qh @ op.rel_w.t()).gather(-1, index) * scale + mask  # (B, H, L, S+L)
            y = F.scaled_dot_product_attention(qh, keys, values, attn_mask=bias, scale=scale)
            x = x + op.out(y.transpose(1, 2).reshape(B * L, H * D))  # (B*L, C)
            x = x + op.ffn(op.ln2(x))
        logits = self.head(self.final(x)).view(B, L, -1)  # (B, L, V)
        kv = torch.cat([t.view(B, L, -1) for t in new_kv], dim=-1)  # (B, L, W)
        return torch.log_softmax(logits.float(), dim=-1), kv
