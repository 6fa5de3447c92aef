"""Batch-1 decoding runtime for Hugging Face GPT-2 (dense or compact): one TorchScript call per step.

An eager GPT2LMHeadModel decode step spends milliseconds per token in Python and dispatch (the
cache object, mask creation, module calls, the tanh-GELU written as separate ops) before any
arithmetic, more than the matmuls of a 4 x 256 model pruned to a quarter. `FastGPT2Decoder` reads
the tensors of a GPT2LMHeadModel (its Conv1D layers, `fastest_dense`'s DenseLinears, or any
`compact` layer: fewer heads / FFN units, low rank, CSR, int8, sliced / tied embeddings) into
flat kernels (`prunekit.runtime.kernels`) and runs each token through `GPT2Core.step`: per layer,
LayerNorm -> fused q/k/v kernel -> write the KV cache -> scores, softmax, mix -> c_proj kernel
-> residual, LayerNorm -> c_fc kernel -> GELU -> c_proj kernel -> residual. The arithmetic is
GPT-2's (eval mode), so logits match the model's own decoding to float rounding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.export.conv1d import conv1d_to_linear, is_hf_conv1d
from prunekit.export.replace import replace_modules
from prunekit.runtime.kernels import embedding_kernel, linear_kernel, script

_ACTS = {"NewGELUActivation": "tanh", "GELUTanh": "tanh", "GELUActivation": "none"}


def _norm(ln: nn.LayerNorm) -> tuple[Tensor, Tensor, float, list[int]]:
    return ln.weight.detach(), ln.bias.detach(), float(ln.eps), list(ln.normalized_shape)


class GPT2Block(nn.Module):
    """One GPT-2 block for one new token per sequence: x (B, C) at position `pos` -> (B, C)."""

    def __init__(self, block: nn.Module, layer: int):
        super().__init__()
        attn, mlp = block.attn, block.mlp
        self.ln1_w, self.ln1_b, self.ln1_eps, self.width = _norm(block.ln_1)
        self.ln2_w, self.ln2_b, self.ln2_eps, _ = _norm(block.ln_2)
        self.qkv, self.proj = linear_kernel(attn.c_attn), linear_kernel(attn.c_proj)
        self.fc, self.fc_proj = linear_kernel(mlp.c_fc), linear_kernel(mlp.c_proj)
        self.n_head, self.d_head = int(attn.num_heads), int(attn.head_dim)
        scale = getattr(attn, "scaling", None)  # transformers >= 5; else from the flags
        if scale is None:
            scale = self.d_head**-0.5 if attn.scale_attn_weights else 1.0
            scale /= float(layer + 1) if attn.scale_attn_by_inverse_layer_idx else 1.0
        self.scale = float(scale)
        act = type(mlp.act).__name__
        if act not in _ACTS or attn.is_cross_attention:
            raise PrunekitError(
                f"the GPT-2 runtime supports self-attention with GELU MLPs, not {act}: decode "
                "with the model itself"
            )
        self.approximate = _ACTS[act]

    def forward(self, x: Tensor, pos: int, keys: Tensor, values: Tensor) -> Tensor:
        """x (B, C); keys / values (B, H, cap, D), written at `pos`."""
        B, H, D, S = x.size(0), self.n_head, self.d_head, pos + 1
        h = F.layer_norm(x, self.width, self.ln1_w, self.ln1_b, self.ln1_eps)
        qkv = self.qkv(h).split(H * D, dim=1)  # q, k, v: each (B, H*D)
        q, k, v = qkv[0], qkv[1], qkv[2]
        keys.select(2, pos).copy_(k.view(B, H, D))
        values.select(2, pos).copy_(v.view(B, H, D))
        scores = torch.bmm(
            q.reshape(B * H, 1, D), keys.view(B * H, -1, D).narrow(1, 0, S).transpose(1, 2)
        )  # (BH, 1, S)
        p = torch.softmax(scores * self.scale, dim=-1)
        y = torch.bmm(p, values.view(B * H, -1, D).narrow(1, 0, S)).view(B, H * D)
        x = x + self.proj(y)
        h = F.layer_norm(x, self.width, self.ln2_w, self.ln2_b, self.ln2_eps)
        h = F.gelu(self.fc(h), approximate=self.approximate)
        return x + self.fc_proj(h)


class GPT2Core(nn.Module):
    """wte + wpe -> GPT2Blocks -> ln_f -> lm_head kernel, token by token."""

    def __init__(self, model: nn.Module):
        super().__init__()
        t = model.transformer
        self.wte, self.wpe = embedding_kernel(t.wte), embedding_kernel(t.wpe)
        self.blocks = nn.ModuleList([GPT2Block(b, i) for i, b in enumerate(t.h)])
        self.lnf_w, self.lnf_b, self.lnf_eps, self.width = _norm(t.ln_f)
        self.head = linear_kernel(model.lm_head)

    @torch.jit.export
    def step(self, idx: Tensor, pos: int, keys: list[Tensor], values: list[Tensor]) -> Tensor:
        """idx (B, T) at positions pos..pos+T-1 -> logits (B, T, V); writes the caches."""
        logits: list[Tensor] = []
        for t in range(idx.size(1)):
            p = pos + t
            where = torch.full([idx.size(0)], p, dtype=torch.long)
            x = self.wte(idx[:, t]) + self.wpe(where)  # (B, C)
            for i, block in enumerate(self.blocks):
                x = block(x, p, keys[i], values[i])
            x = F.layer_norm(x, self.width, self.lnf_w, self.lnf_b, self.lnf_eps)
            logits.append(self.head(x))
        return torch.stack(logits, dim=1)


@dataclass
class GPT2State:
    """Decoding state: tokens seen so far and per-layer caches (B, H, capacity, D)."""

    pos: int
    keys: list[Tensor]
    values: list[Tensor]


def _linears(model: nn.Module) -> nn.Module:
    """`model` itself, or an eval copy with its Conv1D layers as nn.Linear (kernels need them)."""
    if not any(is_hf_conv1d(m) for m in model.modules()):
        return model
    new = copy.deepcopy(model).eval()
    replace_modules(new, lambda name, m: conv1d_to_linear(m) if is_hf_conv1d(m) else None)
    return new


class FastGPT2Decoder(nn.Module):
    """A GPT2LMHeadModel (dense or compact) decoding one token at a time through `GPT2Core`."""

    def __init__(self, model: nn.Module, *, scripted: bool = True):
        """Args: model (eval mode); scripted: compile the core with TorchScript.

        Raises:
            PrunekitError: a model in training mode, not GPT-2 shaped, or a layer without a
                kernel.
        """
        super().__init__()
        if model.training:
            raise PrunekitError("the GPT-2 runtime is for inference: call model.eval() first")
        if not hasattr(getattr(model, "transformer", None), "h"):
            raise PrunekitError(
                f"{type(model).__name__} is not a GPT2LMHeadModel (no transformer.h blocks): "
                "FastGPT2Decoder decodes Hugging Face GPT-2, dense or compact, only"
            )
        self.model = model
        core = GPT2Core(_linears(model))
        self.shapes = [(b.n_head, b.d_head) for b in core.blocks]
        self.capacity = int(model.config.n_positions)
        self.core = script(core) if scripted else core

    def forward(self, idx: Tensor):
        """The wrapped model's batched forward."""
        return self.model(idx)

    def init_state(self, batch_size: int) -> GPT2State:
        """An empty state with caches of the model's n_positions."""
        keys = [torch.empty(batch_size, h, self.capacity, d) for h, d in self.shapes]
        return GPT2State(0, keys, [torch.empty_like(k) for k in keys])

    def decode_step(self, idx: Tensor, state: GPT2State) -> tuple[Tensor, GPT2State]:
        """idx (B, T) -> logits (B, T, V) and the state after them.

        Raises:
            PrunekitError: more tokens than the model's n_positions.
        """
        if state.pos + idx.size(1) > self.capacity:
            raise PrunekitError(
                f"decoding past {self.capacity} tokens (GPT2Config.n_positions): start a new state"
            )
        logits = self.core.step(idx, state.pos, state.keys, state.values)
        return logits, GPT2State(state.pos + idx.size(1), state.keys, state.values)
