"""Tiny stand-in models with the attribute names of prunekit's models (and of HF GPT-2)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.prune import finalize


class Attention(nn.Module):
    """Causal MHA with q/k/v/out projections, a head size and relative key embeddings."""

    def __init__(self, d: int, n_head: int, d_head: int, max_rel: int = 4):
        super().__init__()
        self.d_head = d_head
        self.q_proj = nn.Linear(d, n_head * d_head)
        self.k_proj = nn.Linear(d, n_head * d_head)
        self.v_proj = nn.Linear(d, n_head * d_head)
        self.out_proj = nn.Linear(n_head * d_head, d)
        self.rel_k = nn.Embedding(max_rel + 1, d_head)

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, -1, self.d_head).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, -1, self.d_head).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, self.d_head).transpose(1, 2)
        dist = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T)
        rel = q @ self.rel_k.weight.T  # (B, H, T, R)
        idx = dist.clamp(0, self.rel_k.num_embeddings - 1).expand(B, rel.size(1), T, T)
        att = (q @ k.transpose(-1, -2) + rel.gather(-1, idx)) / math.sqrt(self.d_head)
        att = att.masked_fill(dist < 0, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, -1)  # (B, T, H*D)
        return self.out_proj(y)


class FFN(nn.Module):
    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.fc_in = nn.Linear(d, d_ff)
        self.fc_out = nn.Linear(d_ff, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))


class Block(nn.Module):
    def __init__(self, d: int, n_head: int, d_head: int, d_ff: int):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d)
        self.attn = Attention(d, n_head, d_head)
        self.ln_ffn = nn.LayerNorm(d)
        self.ffn = FFN(d, d_ff)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.ffn(self.ln_ffn(x))


class TinyTransformerLM(nn.Module):
    """embed -> blocks -> ln_f -> lm_head, like prunekit's TransformerLM."""

    def __init__(self, vocab=13, d=8, n_head=2, d_head=4, d_ff=12, n_layer=2, tie=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d, n_head, d_head, d_ff) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.lm_head.weight = self.embed.weight

    def forward(self, idx: Tensor) -> Tensor:
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.ln_f(x))


class TinyRNNLM(nn.Module):
    """embed -> LSTM/GRU -> (proj) -> lm_head, like prunekit's RNNLM."""

    def __init__(self, cell="lstm", vocab=11, d_embed=6, hidden=5, layers=2, proj=False, bi=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_embed)
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(d_embed, hidden, num_layers=layers, batch_first=True, bidirectional=bi)
        width = hidden * (2 if bi else 1)
        self.proj = nn.Linear(width, d_embed, bias=False) if proj else None
        self.lm_head = nn.Linear(d_embed if proj else width, vocab)

    def forward(self, idx: Tensor) -> Tensor:
        out, _ = self.rnn(self.embed(idx))
        if self.proj is not None:
            out = self.proj(out)
        return self.lm_head(out)


class Conv1D(nn.Module):
    """Hugging Face GPT-2's Conv1D: a Linear with weight stored (in, out)."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(
            *x.shape[:-1], self.nf
        )


@dataclass
class LMOutput:
    logits: Tensor


class GPT2Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(3 * d, d)
        self.attn.c_proj = Conv1D(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.c_fc = Conv1D(4 * d, d)
        self.mlp.c_proj = Conv1D(d, 4 * d)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        x = x + self.attn.c_proj(y.reshape(B, T, C))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


class TinyGPT2(nn.Module):
    """The module layout of transformers' GPT2LMHeadModel (tied lm_head), without the library."""

    def __init__(self, vocab=17, d=8, n_head=2, n_layer=2, n_pos=16):
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(vocab, d)
        self.transformer.wpe = nn.Embedding(n_pos, d)
        self.transformer.h = nn.ModuleList([GPT2Block(d, n_head) for _ in range(n_layer)])
        self.transformer.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx: Tensor) -> LMOutput:
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))
        for b in t.h:
            x = b(x)
        return LMOutput(self.lm_head(t.ln_f(x)))


def lm_batches(vocab: int, n: int, B: int = 3, T: int = 6, seed: int = 0) -> list:
    """n deterministic (x, y) next-token batches of shape (B, T)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        seq = torch.randint(0, vocab, (B, T + 1), generator=g)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def lm_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of a model returning logits (B, T, V)."""
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _removed_indices(pruner) -> dict[tuple[str, int], set[int]]:
    """(param, dim) -> indices removed along dim, from the GroupSpecs and the current masks."""
    masks = pruner.masks()
    out: dict[tuple[str, int], set[int]] = {}
    for spec in pruner.groups:
        first = spec.members[0]
        for g in range(spec.n_groups):
            idx = torch.tensor(first.indices[g])
            if masks[first.param].index_select(first.dim, idx).any():
                continue  # group g is alive
            for m in spec.members:
                out.setdefault((m.param, m.dim), set()).update(m.indices[g])
    return out


def shrink(model: nn.Module, pruner) -> nn.Module:
    """Physically remove the pruned groups (the export's job), by slicing along GroupSpecs."""
    removed = _removed_indices(pruner)
    small = finalize(copy.deepcopy(model))
    params = dict(small.named_parameters(remove_duplicate=False))
    new: dict[str, torch.Tensor] = {}
    for (name, dim), drop in removed.items():
        t = new.get(name, params[name].detach())
        keep = torch.tensor([i for i in range(t.shape[dim]) if i not in drop])
        new[name] = t.index_select(dim, keep)
        if dim == 0:  # rows carry their bias entries
            bias = name.replace("weight", "bias")
            if bias in params and params[bias] is not None:
                new[bias] = new.get(bias, params[bias].detach()).index_select(0, keep)
    for name, value in new.items():
        mod_name, _, attr = name.rpartition(".")
        mod = small.get_submodule(mod_name)
        setattr(mod, attr, nn.Parameter(value))
        if isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = mod.weight.shape
    for mod in small.modules():
        if isinstance(mod, nn.RNNBase):
            mod.hidden_size = mod.weight_hh_l0.shape[1]
            mod.input_size = mod.weight_ih_l0.shape[1]
            mod._init_flat_weights()
    return small
