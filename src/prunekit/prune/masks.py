"""Binary masks attached as parametrizations, so `module.weight` is always the masked weight.

`attach_mask(module, "weight")` wraps the parameter with `torch.nn.utils.parametrize`: the stored
parameter (same object, same `id()`, so an optimizer built earlier keeps working) becomes
`module.parametrizations.weight.original` and every read of `module.weight` returns
`original * mask`. Consequences:

- masks are buffers: they are saved in `state_dict()` (keys `...parametrizations.weight.0.mask`),
  restored by `load_state_dict()` into a model with masks attached, moved by `.to()`, and kept by
  `copy.deepcopy` (LSTM/GRU included, see `detach_rnn_flat_weights`);
- gradients of pruned entries are zero by construction (d(w * m)/dw = m);
- `update_mask_` zeroes the pruned entries of the stored parameter and of its optimizer state
  (exp_avg, exp_avg_sq, momentum_buffer, ...), so nothing regrows;
- `finalize(model)` removes the parametrizations and leaves plain parameters holding the zeros.

Serialisation is through `state_dict()` only: `torch.save(model)` of a parametrized module raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import PrunekitError


class Mask(nn.Module):
    """Multiply a tensor by a boolean keep-mask held in the buffer `mask` (True = keep).

    `reader` names the module that reads the pruned units of this tensor's module (set by
    structured pruning for RNN units, conv channels and embedding columns; None otherwise), so
    that export removes the same units from it. It lives with the model (deepcopy keeps it), not
    in `state_dict()`.
    """

    reader: str | None = None

    def __init__(self, shape: Sequence[int], device: torch.device | str | None = None):
        super().__init__()
        self.register_buffer("mask", torch.ones(tuple(shape), dtype=torch.bool, device=device))

    def forward(self, x: Tensor) -> Tensor:
        """Return x * mask (same shape and dtype as x)."""
        return x * self.mask

    def extra_repr(self) -> str:
        kept = int(self.mask.sum())
        return f"shape={tuple(self.mask.shape)}, kept={kept}/{self.mask.numel()}"


def get_mask(module: nn.Module, attr: str) -> Mask | None:
    """Return the `Mask` parametrizing `module.<attr>`, or None."""
    if not parametrize.is_parametrized(module, attr):
        return None
    return next((p for p in module.parametrizations[attr] if isinstance(p, Mask)), None)


def original(module: nn.Module, attr: str) -> nn.Parameter:
    """Return the stored parameter behind `module.<attr>` (unmasked, the optimizer's tensor)."""
    if parametrize.is_parametrized(module, attr):
        return module.parametrizations[attr].original
    return getattr(module, attr)


def detach_rnn_flat_weights(module: nn.Module, args: object, output: object) -> None:
    """Forward hook: replace the masked (non-leaf) tensors an RNN caches in `_flat_weights`.

    nn.LSTM/GRU keep the weights of their last forward in `module._flat_weights`; with a
    parametrization these are graph tensors, and `copy.deepcopy` of such a module raises "Only
    Tensors created explicitly by the user (graph leaves) support the deepcopy protocol". The next
    forward rebuilds the list from the parametrizations anyway, so detached copies are harmless.
    """
    flat = getattr(module, "_flat_weights", None)
    if flat is None:
        return
    module._flat_weights = [
        w.detach() if isinstance(w, Tensor) and w.grad_fn is not None else w for w in flat
    ]


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before its class-level properties change.

    parametrize injects a `Parametrized<Cls>` class per module, but `copy.deepcopy` shares that
    class between the copies; removing (or adding) a parametrization deletes (or adds) a property
    on it, which would break the other copy ("'ParametrizedLinear' object has no attribute
    'weight'").
    """
    if parametrize.is_parametrized(module):
        cls = type(module)
        ns = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        module.__class__ = type(cls.__name__, cls.__bases__, ns)


def _has_rnn_hook(module: nn.Module) -> bool:
    return any(h is detach_rnn_flat_weights for h in module._forward_hooks.values())


def attach_mask(module: nn.Module, attr: str, mask: Mask | None = None) -> Mask:
    """Parametrize `module.<attr>` with an all-ones `Mask` (or the given shared one).

    Args:
        module: the owner, e.g. an nn.Linear or an nn.LSTM.
        attr: the parameter name, e.g. "weight" or "weight_hh_l0".
        mask: an existing Mask to share (tied weights); its shape must match.

    Returns:
        The Mask now applied to `module.<attr>`.

    Raises:
        PrunekitError: the tensor already has a mask, or a shared mask of another shape.
    """
    existing = get_mask(module, attr)
    if existing is not None:
        if existing is mask:
            return existing
        raise PrunekitError(
            f"{parametrize.type_before_parametrizations(module).__name__}.{attr} already has a "
            "pruning mask: attach a pruner once per model, or call prunekit.prune.finalize(model) "
            "first"
        )
    p = original(module, attr)
    if mask is None:
        mask = Mask(p.shape, device=p.device)
    elif tuple(mask.mask.shape) != tuple(p.shape):
        raise PrunekitError(
            f"shared mask of shape {tuple(mask.mask.shape)} does not fit {attr} of shape "
            f"{tuple(p.shape)}: tied tensors must have one shape"
        )
    _own_class(module)
    parametrize.register_parametrization(module, attr, mask)
    if isinstance(module, nn.RNNBase) and not _has_rnn_hook(module):
        module.register_forward_hook(detach_rnn_flat_weights)
    return mask


@torch.no_grad()
def zero_pruned_(param: Tensor, keep: Tensor, optimizers: Iterable[torch.optim.Optimizer]) -> None:
    """Zero the entries of `param` where `keep` is False, and the same entries of its optim state.

    Args:
        param (Tensor[*shape]): the stored parameter.
        keep (Tensor[*shape], bool): True where the weight stays.
        optimizers: optimizers whose per-parameter state tensors (same shape) are zeroed too.
    """
    drop = ~keep
    param.masked_fill_(drop, 0)
    for opt in optimizers:
        for value in opt.state.get(param, {}).values():
            if isinstance(value, Tensor) and value.shape == param.shape:
                value.masked_fill_(drop, 0)


@torch.no_grad()
def update_mask_(
    mask: Mask,
    keep: Tensor,
    param: Tensor,
    optimizers: Iterable[torch.optim.Optimizer] = (),
) -> None:
    """Shrink `mask` to `mask & keep` (masks only ever lose entries) and zero what was pruned.

    Args:
        mask: the Mask to update in place.
        keep (Tensor[*shape], bool): the newly computed keep-mask.
        param (Tensor[*shape]): the stored parameter behind the mask.
        optimizers: optimizers holding state for `param`.
    """
    mask.mask &= keep.to(mask.mask.device)
    zero_pruned_(param, mask.mask, optimizers)


def mask_modules(model: nn.Module) -> list[tuple[str, nn.Module, str, Mask]]:
    """List `(module_name, module, attr, mask)` for every masked tensor of `model`."""
    out = []
    for name, m in model.named_modules():
        if not parametrize.is_parametrized(m):
            continue
        for attr in list(m.parametrizations.keys()):
            mask = get_mask(m, attr)
            if mask is not None:
                out.append((name, m, attr, mask))
    return out


def masks_by_param(model: nn.Module) -> dict[int, Mask]:
    """Map `id(stored parameter)` -> its Mask, for every masked tensor of `model`."""
    return {id(original(m, attr)): mask for _, m, attr, mask in mask_modules(model)}


def finalize(model: nn.Module) -> nn.Module:
    """Bake the masks into the weights and remove them: a plain model holding zeros.

    Parameters keep their identity (tied weights stay tied).

    Args:
        model: a model with masks attached (modified in place).

    Returns:
        The same model.

    Raises:
        PrunekitError: a masked tensor also carries another, non-prunekit parametrization.
    """
    for name, m, attr, _ in mask_modules(model):
        if len(m.parametrizations[attr]) != 1:
            raise PrunekitError(
                f"{name}.{attr} has other parametrizations besides the pruning mask: "
                "remove them first"
            )
        _own_class(m)
        parametrize.remove_parametrizations(m, attr, leave_parametrized=True)
        if isinstance(m, nn.RNNBase):
            m._init_flat_weights()
    for m in model.modules():
        if isinstance(m, nn.RNNBase) and not parametrize.is_parametrized(m):
            for key, hook in list(m._forward_hooks.items()):
                if hook is detach_rnn_flat_weights:
                    del m._forward_hooks[key]
    return model
