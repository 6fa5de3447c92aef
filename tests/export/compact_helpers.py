"""Tiny prunekit models, pruned with prunekit, for the compact-export tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunekit.models import build_model
from prunekit.prune import OneShot, PruneConfig, ScopeConfig, prune_

V = 23
RNN_SCOPE = ScopeConfig(module_types=("Linear", "LSTM", "GRU"))


def tiny_transformer(**kw) -> nn.Module:
    torch.manual_seed(0)
    cfg = {"arch": "transformer", "vocab_size": V, "d_model": 16, "n_layer": 2, "n_head": 4}
    cfg.update(d_ff=32, dropout=0.0, max_rel_pos=4, **kw)
    return build_model(cfg).eval()


def tiny_rnn(cell: str = "lstm", **kw) -> nn.Module:
    torch.manual_seed(0)
    cfg = {"arch": "rnn", "vocab_size": V, "cell": cell, "d_embed": 8, "d_hidden": 12}
    cfg.update(n_layer=2, dropout=0.0, **kw)
    return build_model(cfg).eval()


def pruned(model: nn.Module, method: str, sparsity: float, **cfg) -> nn.Module:
    """`model` with prunekit masks (or factorized layers) attached, pruned in one shot."""
    config = PruneConfig(method=method, schedule=OneShot(sparsity=sparsity), **cfg)
    return prune_(model, config).eval()


def ids(shape: tuple[int, int] = (2, 7), seed: int = 0) -> Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


def logits(model: nn.Module, idx: Tensor) -> Tensor:
    with torch.no_grad():
        return model(idx)


def decoded(model: nn.Module, idx: Tensor) -> Tensor:
    """Logits (B, T, V) of token-by-token incremental decoding with the model's state."""
    state, out = model.init_state(idx.size(0)), []
    with torch.no_grad():
        for t in range(idx.size(1)):
            step, state = model.decode_step(idx[:, t : t + 1], state)
            out.append(step)
    return torch.cat(out, dim=1)


def max_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max())
