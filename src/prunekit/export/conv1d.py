"""Hugging Face's `Conv1D` (GPT-2's Linear with its weight stored (in, out)) as a plain nn.Linear.

`Conv1D(nf, nx)(x) = x @ W + b` with W (nx, nf) is `nn.Linear(nx, nf)` with weight W.T, so
export turns every Conv1D into an nn.Linear first; from then on GPT-2's layers get everything
an nn.Linear gets (structured slicing, the dense layout choice, CSR, low rank, int8). The module
is recognised by its class name and attributes, so transformers is never imported.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.export.replace import replace_modules


def is_hf_conv1d(m: object) -> bool:
    """Hugging Face's `Conv1D`: a module named Conv1D with `nf` and a 2-D weight (in, out)."""
    w = getattr(m, "weight", None)
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and getattr(w, "dim", lambda: 0)() == 2


def conv1d_to_linear(m: nn.Module) -> nn.Linear:
    """The nn.Linear computing the same map as Conv1D `m` (weight copied transposed)."""
    w = m.weight.detach()  # (in, out)
    lin = nn.Linear(w.shape[0], w.shape[1], bias=m.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w.t())
        if m.bias is not None:
            lin.bias.copy_(m.bias.detach())
    return lin.train(m.training)


def convert_conv1d(model: nn.Module) -> list[dict[str, Any]]:
    """Replace every Hugging Face Conv1D of `model` by its nn.Linear (in place); one record each."""
    records = []

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if not is_hf_conv1d(m):
            return None
        records.append({"module": name, "kind": "conv1d_as_linear", "shape": list(m.weight.shape)})
        return conv1d_to_linear(m)

    replace_modules(model, convert)
    return records
