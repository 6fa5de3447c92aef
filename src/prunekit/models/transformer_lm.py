"""Transformer NNLM with relative positions, as in "Neural Language Model Pruning for ASR" §4.1.1.

Subword embedding -> N pre-LayerNorm blocks (LN -> causal self-attention -> residual;
LN -> FFN -> residual) -> final LayerNorm -> linear output projection (softmax in the loss).

Positions are relative (Shaw, Uszkoreit & Vaswani 2018): a learned embedding a_d of the clipped
distance d = clip(j - i, -k, 0) is added to the keys, e_ij = q_i . (k_j + a_d) / sqrt(d_head).
Layer sizes are read from the modules at forward time, so a compressed copy with physically smaller
projections (fewer heads, narrower FFN) still runs.
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


@dataclass
class TransformerState:
    """Incremental-decoding state: per-layer KV cache and the absolute position of the next token."""

    batch_size: int
    pos: int = 0
    kv: list[KV | None] = field(default_factory=list)


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
        S = k.size(2)

        # Relative term q_i . a_{clip(j-i)}: score every query against the k+1 embeddings,
        # then pick the column of each (i, j) pair's clipped distance.
        q_pos = torch.arange(pos, pos + T, device=x.device)
        k_pos = torch.arange(pos + T - S, pos + T, device=x.device)
        dist = q_pos[:, None] - k_pos[None, :]  # (T, S), i - j >= 0 where visible
        max_rel = self.rel_k.num_embeddings - 1
        rel = q @ self.rel_k.weight.T  # (B, H, T, k+1)
        index = dist.clamp(0, max_rel).expand(B, rel.size(1), T, S)  # (B, H, T, S)
        bias = rel.gather(-1, index) / math.sqrt(self.d_head)  # (B, H, T, S)
        bias = bias.masked_fill(dist < 0, float("-inf"))  # causal

        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, H*D)
        return self.resid_drop(self.out_proj(y)), (k, v)

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
        return TransformerState(batch_size=batch_size, pos=0, kv=[None] * len(self.blocks))

    def decode_step(self, idx: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """Feed the next tokens idx (B, T_new); returns logits (B, T_new, V) and a new state.

        The input state is not modified, so it can be reused (e.g. to branch in beam search).
        """
        if idx.dim() != 2 or idx.size(0) != state.batch_size:
            raise PrunekitError(
                f"decode_step got token ids of shape {tuple(idx.shape)} for a state of batch size "
                f"{state.batch_size}: pass a (batch_size, T_new) tensor or call init_state again"
            )
        x = self.drop(self.embed(idx))  # (B, T_new, C)
        new_kv: list[KV | None] = []
        for block, past in zip(self.blocks, state.kv, strict=True):
            x, kv = block(x, state.pos, past)
            new_kv.append(kv)
        logits = self.lm_head(self.ln_f(x))  # (B, T_new, V)
        return logits, TransformerState(state.batch_size, state.pos + idx.size(1), new_kv)
