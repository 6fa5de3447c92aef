"""Transformer NNLM with relative positions, as in "Neural Language Model Pruning for ASR" §4.1.1.

Subword embedding -> N pre-LayerNorm blocks (LN -> causal self-attention -> residual;
LN -> FFN -> residual) -> final LayerNorm -> linear output projection (softmax in the loss).

Positions are relative (Shaw, Uszkoreit & Vaswani 2018): a learned embedding a_d of the clipped
distance d = clip(j - i, -k, 0) is added to the keys, e_ij = q_i . (k_j + a_d) / sqrt(d_head).
Layer sizes are read from the modules at forward time, so a compressed copy with physically smaller
projections (fewer heads, narrower FFN) still runs.

Incremental decoding (`init_state` / `decode_step`) has its own path, `Block.decode` ->
`CausalSelfAttention.decode`, tuned for batch-1 on-device decoding: keys and values go into
preallocated, growable per-layer buffers (`KVCache`, no concatenation per token), and a single new
token attends with a few batched matmuls, its relative-position bias picked from q . a_m with a
cached index (no mask, no per-call index building). Its cost per token beyond the projections is
then small, so pruned or factorized projections show up as speed. `forward(x, pos, past)` is
unchanged (training, export).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.models.config_utils import (
    check_bool,
    check_choice,
    check_int,
    check_prob,
    config_from_dict,
)

ACTIVATIONS = ("gelu", "relu")


@dataclass
class TransformerLMConfig:
    """Architecture of a `TransformerLM`; `d_head=None` means `d_model // n_head`."""

    vocab_size: int
    d_model: int = 512
    n_layer: int = 6
    n_head: int = 8
    d_head: int | None = None
    d_ff: int = 2048
    dropout: float = 0.1
    max_rel_pos: int = 64
    tie_embeddings: bool = False
    activation: str = "gelu"

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, 1, 6300)
        check_int("d_model", self.d_model, 1, 512)
        check_int("n_layer", self.n_layer, 1, 6)
        check_int("n_head", self.n_head, 1, 8)
        if self.d_head is None:
            if self.d_model % self.n_head != 0:
                raise PrunekitError(
                    f"model.n_head={self.n_head} must divide model.d_model={self.d_model}: "
                    "pick a divisor of d_model or set model.d_head explicitly"
                )
        else:
            check_int("d_head", self.d_head, 1, 64)
        check_int("d_ff", self.d_ff, 1, 2048)
        self.dropout = check_prob("dropout", self.dropout, 0.1)
        check_int("max_rel_pos", self.max_rel_pos, 1, 64)
        check_bool("tie_embeddings", self.tie_embeddings)
        check_choice("activation", self.activation, ACTIVATIONS)

    @property
    def head_dim(self) -> int:
        """Resolved per-head size."""
        return self.d_head if self.d_head is not None else self.d_model // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformerLMConfig:
        return config_from_dict(cls, data, arch="transformer")


KV = tuple[Tensor, Tensor]  # (keys, values), each (B, H, S, d_head)

MIN_CACHE_CAPACITY = 128  # positions preallocated by the first decode step of a state


class KVCache:
    """Preallocated per-layer key/value buffers, shared by the states of one decoding branch.

    `keys[i]` / `values[i]` of layer i are (B, H_i, capacity, d_head) tensors, allocated by the
    layer's first decode step (H_i is read from its projections, so layers may differ);
    positions 0..length-1 are written. A `TransformerState` at position p reads positions < p
    only, and `decode_step` writes a buffer only at positions >= `length` >= p of every state that
    shares it: appending from the newest state of a branch is in place, while decoding again from
    an older state (a branch) copies its prefix into a new cache first. So a state's keys and values
    never change, whichever states are decoded from later.
    """

    __slots__ = ("capacity", "inference", "keys", "length", "values")

    def __init__(self, n_layer: int, capacity: int):
        self.capacity = capacity
        self.length = 0
        self.inference = torch.is_inference_mode_enabled()
        self.keys: list[Tensor | None] = [None] * n_layer
        self.values: list[Tensor | None] = [None] * n_layer

    def copy_prefix(self, length: int, capacity: int) -> KVCache:
        """A new cache of `capacity` positions holding a copy of positions 0..length-1."""
        new = KVCache(len(self.keys), capacity)
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            if k is None or v is None or length == 0:
                continue
            B, H, _, D = k.shape
            new.keys[i] = k.new_empty(B, H, capacity, D)
            new.values[i] = v.new_empty(B, H, capacity, D)
            new.keys[i].narrow(2, 0, length).copy_(k.narrow(2, 0, length))
            new.values[i].narrow(2, 0, length).copy_(v.narrow(2, 0, length))
        new.length = length
        return new


@dataclass
class TransformerState:
    """Incremental-decoding state: the absolute position of the next token and the KV cache.

    `cache` holds keys and values of positions 0..pos-1 (and possibly later positions written by
    other states of the same branch, which this state never reads); `kv` gives them per layer.
    """

    batch_size: int
    pos: int = 0
    cache: KVCache | None = field(default=None, repr=False)

    @property
    def kv(self) -> list[KV | None]:
        """Per layer (keys, values), each (B, H, pos, d_head) views of the cache, or None."""
        if self.cache is None:
            return []
        out: list[KV | None] = []
        for k, v in zip(self.cache.keys, self.cache.values, strict=True):
            if k is None or v is None or self.pos == 0:
                out.append(None)
                continue
            out.append((k.narrow(2, 0, self.pos), v.narrow(2, 0, self.pos)))
        return out


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention with Shaw-style relative key embeddings.

    `rel_k.weight[m]` embeds the distance j - i = -m (m = 0..k); all distances beyond k share row k.
    The embeddings are shared by the heads of the layer.
    """

    def __init__(self, d_model: int, n_head: int, d_head: int, max_rel_pos: int, dropout: float):
        super().__init__()
        self.d_head = d_head
        self.q_proj = nn.Linear(d_model, n_head * d_head)
        self.k_proj = nn.Linear(d_model, n_head * d_head)
        self.v_proj = nn.Linear(d_model, n_head * d_head)
        self.out_proj = nn.Linear(n_head * d_head, d_model)
        self.rel_k = nn.Embedding(max_rel_pos + 1, d_head)
        self.attn_dropout = dropout
        self.resid_drop = nn.Dropout(dropout)
        # Decode-time cache of `_distance_index` (not a buffer: no state_dict entry).
        self._ramp: Tensor | None = None
        self._ramp_max = -1

    @property
    def n_head(self) -> int:
        """Number of heads, read from the (possibly compressed) query projection."""
        return self.q_proj.out_features // self.d_head

    def forward(self, x: Tensor, pos: int = 0, past: KV | None = None) -> tuple[Tensor, KV]:
        """x: (B, T, C), first token at absolute position `pos`; past: cached (k, v) or None.

        Returns the output (B, T, C) and the updated cache (k, v), each (B, H, S, d_head).
        """
        B, T, _ = x.shape
        q = self.q_proj(x).reshape(B, T, -1, self.d_head).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).reshape(B, T, -1, self.d_head).transpose(1, 2)  # (B, H, T, D)
        v = self.v_proj(x).reshape(B, T, -1, self.d_head).transpose(1, 2)  # (B, H, T, D)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, H, S, D)
            v = torch.cat([past[1], v], dim=2)  # (B, H, S, D)
        y = self.attend(q, k, v, self.relative_bias(q, pos, k.size(2)))  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, H*D)
        return self.resid_drop(self.out_proj(y)), (k, v)

    def relative_bias(self, q: Tensor, pos: int, S: int) -> Tensor:
        """Additive attention bias (B, H, T, S) for queries q (B, H, T, D) at pos..pos+T-1 over
        the S most recent keys: the relative term q_i . a_{clip(i-j)} / sqrt(D), -inf where j > i.
        """
        B, H, T, _ = q.shape
        # Score every query against the k+1 embeddings, then pick each (i, j)'s clipped distance.
        q_pos = torch.arange(pos, pos + T, device=q.device)
        k_pos = torch.arange(pos + T - S, pos + T, device=q.device)
        dist = q_pos[:, None] - k_pos[None, :]  # (T, S), i - j >= 0 where visible
        max_rel = self.rel_k.num_embeddings - 1
        rel = q @ self.rel_k.weight.T  # (B, H, T, k+1)
        index = dist.clamp(0, max_rel).expand(B, H, T, S)  # (B, H, T, S)
        bias = rel.gather(-1, index) / math.sqrt(self.d_head)  # (B, H, T, S)
        return bias.masked_fill(dist < 0, float("-inf"))  # causal

    def attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        """softmax(q k^T / sqrt(D) + bias) v: q (B, H, T, D), k, v (B, H, S, D) -> (B, H, T, D)."""
        p = self.attn_dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)

    def decode(self, x: Tensor, pos: int, cache: KVCache, layer: int) -> Tensor:
        """Incremental attention: x (B, T, C) at positions pos..pos+T-1 -> output (B, T, C).

        Writes the new keys and values into layer `layer` of `cache` at positions pos..pos+T-1
        (the caller makes sure that is allowed and fits) and attends to positions 0..pos+T-1 with
        the math of `forward`, reading the cached keys and values in place. The projections are
        called as modules, so compact copies (other Linear-like layers, fewer heads) decode too.
        """
        B, T, _ = x.shape
        D = self.d_head
        q = self.q_proj(x)  # (B, T, H*D)
        k = self.k_proj(x)  # (B, T, H*D)
        v = self.v_proj(x)  # (B, T, H*D)
        H = q.size(-1) // D
        S = pos + T
        keys, values = cache.keys[layer], cache.values[layer]
        if keys is None or values is None:
            keys = cache.keys[layer] = k.new_empty(B, H, cache.capacity, D)
            values = cache.values[layer] = v.new_empty(B, H, cache.capacity, D)
        scale = 1.0 / math.sqrt(D)
        if T != 1:
            keys.narrow(2, pos, T).copy_(k.view(B, T, H, D).transpose(1, 2))
            values.narrow(2, pos, T).copy_(v.view(B, T, H, D).transpose(1, 2))
            q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            dist = torch.arange(pos, S, device=x.device)[:, None] - torch.arange(
                S, device=x.device
            )  # (T, S), i - j >= 0 where visible
            rel_w = self.rel_k.weight
            index = dist.clamp(0, rel_w.size(0) - 1).expand(B, H, T, S)
            bias = (q @ rel_w.T).gather(-1, index) * scale  # (B, H, T, S)
            bias = bias.masked_fill(dist < 0, float("-inf"))  # causal
            y = F.scaled_dot_product_attention(
                q,
                keys.narrow(2, 0, S),
                values.narrow(2, 0, S),
                attn_mask=bias,
                dropout_p=self.attn_dropout if self.training else 0.0,
                scale=scale,
            )  # (B, H, T, D)
            y = y.transpose(1, 2).reshape(B, T, H * D)
        else:
            # One query: it sees every cached key (no mask), key j at the clipped distance
            # min(S-1-j, k). (B, 1, H*D) is (B*H, D) in memory, so no transposes or copies, and
            # a handful of ops: this path's fixed cost is what batch-1 decoding pays per layer.
            BH = B * H
            keys.select(2, pos).copy_(k.view(B, H, D))
            values.select(2, pos).copy_(v.view(B, H, D))
            q = q.reshape(BH, D)  # a view unless a compact layer returned a strided output
            rel_w = self.rel_k.weight  # (k+1, D)
            bias = torch.mm(q, rel_w.t()).index_select(1, self._distance_index(S, rel_w))
            scores = torch.baddbmm(
                bias.view(BH, 1, S),
                q.view(BH, 1, D),
                keys.view(BH, -1, D).narrow(1, 0, S).transpose(1, 2),
                beta=scale,
                alpha=scale,
            )  # (BH, 1, S) = (q . k_j + q . a_{d_j}) / sqrt(D)
            p = torch.softmax(scores, dim=-1)
            if self.training and self.attn_dropout > 0:
                p = F.dropout(p, self.attn_dropout)
            y = torch.bmm(p, values.view(BH, -1, D).narrow(1, 0, S)).view(B, 1, H * D)
        y = self.out_proj(y)  # (B, T, C)
        return self.resid_drop(y) if self.resid_drop.training else y

    def _distance_index(self, S: int, rel_w: Tensor) -> Tensor:
        """(S,) int64: the clipped distances min(S-1-j, k) of keys j = 0..S-1 from query S-1.

        The tail of one descending ramp cached on the module (a view, no op per call beyond the
        slice), rebuilt only when it is too short or k or the device changes.
        """
        max_rel = rel_w.size(0) - 1
        ramp = getattr(self, "_ramp", None)  # absent in modules pickled before it existed
        if (
            ramp is None
            or ramp.size(0) < S
            or ramp.device != rel_w.device
            or getattr(self, "_ramp_max", -1) != max_rel
        ):
            n = max(2 * S, 256)
            with torch.inference_mode(False):  # a normal tensor: usable with autograd later
                ramp = torch.arange(n - 1, -1, -1, device=rel_w.device).clamp_(max=max_rel)
            self._ramp, self._ramp_max = ramp, max_rel
        return ramp.narrow(0, ramp.size(0) - S, S)

    def flops_per_token(self, context_len: int) -> int:
        """Inference FLOPs per token attending to `context_len` keys (see prunekit.eval.flops)."""
        from prunekit.eval.flops import flops_per_token

        proj = sum(flops_per_token(m, context_len) for m in self._projections())
        width = self.n_head * self.d_head
        scores = 2 * context_len * width  # q . k_j for every visible key
        mix = 2 * context_len * width  # sum_j p_ij v_j
        relative = 2 * width * self.rel_k.num_embeddings  # q . a_m for m = 0..k
        return proj + scores + mix + relative

    def _projections(self) -> list[nn.Module]:
        return [self.q_proj, self.k_proj, self.v_proj, self.out_proj]


class FeedForward(nn.Module):
    """Position-wise MLP: fc_in -> activation -> fc_out -> dropout."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str):
        super().__init__()
        self.fc_in = nn.Linear(d_model, d_ff)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.fc_out = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        h = self.act(self.fc_in(x))  # (B, T, d_ff)
        return self.drop(self.fc_out(h))  # (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm Transformer block."""

    def __init__(self, config: TransformerLMConfig):
        super().__init__()
        c = config
        self.ln_attn = nn.LayerNorm(c.d_model)
        self.attn = CausalSelfAttention(c.d_model, c.n_head, c.head_dim, c.max_rel_pos, c.dropout)
        self.ln_ffn = nn.LayerNorm(c.d_model)
        self.ffn = FeedForward(c.d_model, c.d_ff, c.dropout, c.activation)

    def forward(self, x: Tensor, pos: int = 0, past: KV | None = None) -> tuple[Tensor, KV]:
        """x: (B, T, C) -> (B, T, C) and this layer's updated KV cache."""
        a, kv = self.attn(self.ln_attn(x), pos, past)
        x = x + a
        x = x + self.ffn(self.ln_ffn(x))
        return x, kv

    def decode(self, x: Tensor, pos: int, cache: KVCache, layer: int) -> Tensor:
        """Incremental `forward`: x (B, T, C) at positions pos.. -> (B, T, C), extending `cache`."""
        x = x + self.attn.decode(self.ln_attn(x), pos, cache, layer)
        h = self.ln_ffn(x)
        ffn = self.ffn
        if type(ffn) is FeedForward and not ffn.drop.training:
            h = ffn.fc_out(ffn.act(ffn.fc_in(h)))  # FeedForward.forward without the no-op dropout
        else:
            h = ffn(h)
        return x + h


class TransformerLM(nn.Module):
    """Causal Transformer language model: `forward(idx (B, T)) -> logits (B, T, V)`."""

    def __init__(self, config: TransformerLMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 * n_layer).
        for block in self.blocks:
            for proj in (block.attn.out_proj, block.ffn.fc_out):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: Tensor) -> Tensor:
        """idx: (B, T) token ids -> logits (B, T, V)."""
        x = self.drop(self.embed(idx))  # (B, T, C)
        for block in self.blocks:
            x, _ = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def init_state(self, batch_size: int) -> TransformerState:
        """Empty KV cache for `batch_size` sequences starting at position 0."""
        return TransformerState(batch_size=batch_size, pos=0)

    def decode_step(self, idx: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """Feed the next tokens idx (B, T_new); returns logits (B, T_new, V) and a new state.

        The input state is not modified, so it can be reused (e.g. to branch in beam search): the
        new state appends to the input's preallocated KV buffers in place when the input is the
        newest state of its branch, else it copies the input's positions first (see `KVCache`).
        """
        check_decode_input(idx, state)
        pos, T = state.pos, idx.size(1)
        cache = self._writable_cache(state, pos + T)
        x = self.embed(idx)  # (B, T_new, C)
        if self.drop.training:
            x = self.drop(x)
        for layer, block in enumerate(self.blocks):
            x = block.decode(x, pos, cache, layer)
        logits = self.lm_head(self.ln_f(x))  # (B, T_new, V)
        cache.length = pos + T
        return logits, TransformerState(state.batch_size, pos + T, cache)

    def _writable_cache(self, state: TransformerState, needed: int) -> KVCache:
        return writable_cache(state, needed, len(self.blocks))


def writable_cache(state: TransformerState, needed: int, n_layer: int) -> KVCache:
    """A cache holding `state`'s positions that may be written at positions >= state.pos.

    `state.cache` itself when the state is the newest of its branch and the buffers have room;
    otherwise a copy of its positions with room to grow (capacity doubles). With autograd
    recording, every step copies (as concatenation would), so no buffer a graph saved is
    written again; a cache made in inference mode is copied when used outside it.
    """
    old = state.cache
    if old is None:
        return KVCache(n_layer, max(MIN_CACHE_CAPACITY, needed))
    if (
        old.length == state.pos
        and old.capacity >= needed
        and not torch.is_grad_enabled()
        and (not old.inference or torch.is_inference_mode_enabled())
    ):
        return old
    capacity = old.capacity if old.capacity >= needed else max(2 * old.capacity, needed)
    return old.copy_prefix(state.pos, capacity)


def check_decode_input(idx: Tensor, state: TransformerState) -> None:
    """Raise PrunekitError unless idx is (state.batch_size, T_new) token ids."""
    if idx.dim() != 2 or idx.size(0) != state.batch_size:
        raise PrunekitError(
            f"decode_step got token ids of shape {tuple(idx.shape)} for a state of batch size "
            f"{state.batch_size}: pass a (batch_size, T_new) tensor or call init_state again"
        )
