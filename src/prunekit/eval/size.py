"""Model size: parameter counts (total and nonzero) and checkpoint bytes.

Tied parameters (one tensor reachable under two names, e.g. `embed.weight` and
`lm_head.weight`) count once everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


def param_count(model: nn.Module) -> int:
    """Number of entries of the unique stored parameters (tied ones counted once)."""
    return sum(p.numel() for p in model.parameters())  # parameters() skips duplicates


def nonzero_param_count(model: nn.Module) -> int:
    """Number of nonzero entries of the weights as the forward pass sees them.

    For a parametrized tensor (`torch.nn.utils.parametrize`, e.g. a pruning mask) the effective
    tensor `module.<name>` is counted instead of its stored `original`; likewise for
    `torch.nn.utils.prune` (`<name>_orig` * `<name>_mask`).
    """
    seen: set[int] = set()
    count = 0
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name, plist in module.parametrizations.items():
                seen.update(id(p) for p in plist.parameters())
                count += _nnz(getattr(module, name))
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            mask = getattr(module, name[: -len("_orig")] + "_mask", None)
            if name.endswith("_orig") and isinstance(mask, Tensor):
                count += _nnz(p * mask)
            else:
                count += _nnz(p)
    return count


def size_bytes(model: nn.Module) -> int:
    """Bytes of the unique tensors in `model.state_dict()` (parameters and buffers).

    This is the raw tensor payload of a checkpoint at the tensors' current dtypes: tensors that
    share memory (tied weights) count once, file-format overhead (names, headers) is excluded.
    """
    seen: set[tuple[int, int, tuple[int, ...], torch.dtype]] = set()
    total = 0
    for t in model.state_dict().values():
        if not isinstance(t, Tensor):
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def size_report(model: nn.Module) -> dict[str, int]:
    """`{"params", "nonzero_params", "size_bytes"}` of `model` (keys read by the run report)."""
    return {
        "params": param_count(model),
        "nonzero_params": nonzero_param_count(model),
        "size_bytes": size_bytes(model),
    }


def _nnz(t: Tensor) -> int:
    return int(torch.count_nonzero(t.detach()).item())
