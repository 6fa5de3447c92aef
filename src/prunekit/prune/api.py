"""`prune_(model, config)`: one-shot pruning of any nn.Module in one call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.prune.config import PruneConfig
from prunekit.prune.factorized import FactorizedEmbedding
from prunekit.prune.pruner import Pruner
from prunekit.prune.schedules import OneShot

LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


def logits_of(output: Any) -> Tensor:
    """Return the logits in a model output: a Tensor, the first Tensor of a tuple, or `.logits`.

    Raises:
        PrunekitError: no logits found; pass loss_fn to prune_.
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(getattr(output, "logits", None), Tensor):
        return output.logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    raise PrunekitError(
        f"cannot find logits in a model output of type {type(output).__name__}: "
        "pass loss_fn=lambda model, x, y: ... to prune_"
    )


def cross_entropy_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Default calibration loss: cross-entropy of the logits of model(x) against y.

    Args:
        model: returns logits (B, T, V) or (B, V) (or an output holding them).
        x: the model input.
        y (Tensor[B, T] or Tensor[B]): target ids.
    """
    if isinstance(y, Tensor) and y.is_floating_point():
        raise PrunekitError(
            f"calibration targets y are {str(y.dtype).removeprefix('torch.')}: cross-entropy needs "
            "integer class ids; pass y.long(), or a loss_fn for other targets"
        )
    logits = logits_of(model(x))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _check_token_ids(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
    """Forward pre-hook: raise a PrunekitError when an embedding gets non-integer ids."""

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        idx = args[0] if args else None
        if isinstance(idx, Tensor) and (idx.is_floating_point() or idx.is_complex()):
            raise PrunekitError(
                f"embedding {name!r} got {str(idx.dtype).removeprefix('torch.')} token ids from "
                "the calibration batches: pass integer ids (torch.long), e.g. x.long()"
            )

    return hook


def calibrate(
    pruner: Pruner,
    calibration: Iterable[tuple[Tensor, Tensor]],
    loss_fn: LossFn | None = None,
) -> None:
    """Feed calibration batches to `pruner` (gradients for taylor, inputs for activation).

    The model runs in eval mode (no dropout); its mode and gradients are restored/cleared after.

    Raises:
        PrunekitError: float token ids reaching an embedding, or float targets for the default
            cross-entropy loss.
    """
    model, loss_fn = pruner.model, loss_fn or cross_entropy_loss
    was_training = model.training
    model.eval()
    handles = [
        m.register_forward_pre_hook(_check_token_ids(name))
        for name, m in model.named_modules()
        if isinstance(m, nn.Embedding | FactorizedEmbedding)
    ]
    try:
        with pruner.calibration():
            for x, y in calibration:
                if pruner.criterion.needs_grad:
                    model.zero_grad(set_to_none=True)
                    loss_fn(model, x, y).backward()
                    pruner.accumulate()
                else:
                    with torch.no_grad():
                        model(x)
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def prune_(
    model: nn.Module,
    config: PruneConfig,
    *,
    calibration: Iterable[tuple[Tensor, Tensor]] | None = None,
    loss_fn: LossFn | None = None,
) -> nn.Module:
    """Prune `model` in place, in one shot, to `config.schedule.sparsity`.

    Masks stay attached (so they survive state_dict round trips); `finalize(model)` bakes them in.

    Args:
        model: any nn.Module.
        config: a PruneConfig with schedule=OneShot(...).
        calibration: (x, y) batches; needed by data-driven criteria (taylor, activation).
        loss_fn: loss_fn(model, x, y) -> scalar loss; default cross-entropy over model(x) logits.

    Returns:
        The same model, pruned.

    Raises:
        PrunekitError: a non-OneShot schedule, missing calibration data, or any config/scope error.

    Example:
        >>> m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
        >>> _ = prune_(m, PruneConfig(schedule=OneShot(sparsity=0.5)))
        >>> int((m[0].weight == 0).sum())
        32
    """
    if not isinstance(config, PruneConfig):
        raise PrunekitError(f"config must be a PruneConfig, got {type(config).__name__}")
    if not isinstance(config.schedule, OneShot):
        raise PrunekitError(
            f"prune_ prunes in one shot but schedule is {type(config.schedule).__name__}: "
            "use schedule=OneShot(sparsity=...), or attach a Pruner to your training loop"
        )
    pruner = Pruner(model, config)
    data_driven = pruner.criterion.needs_grad or pruner.criterion.needs_inputs
    if data_driven and calibration is None:
        raise PrunekitError(
            f"criterion={config.criterion} needs calibration data: "
            "pass calibration=[(x, y), ...] to prune_"
        )
    pruner.attach()
    try:
        if data_driven:
            calibrate(pruner, calibration, loss_fn)  # type: ignore[arg-type]
        pruner.prune_now(config.schedule.sparsity)
    finally:
        pruner.remove_hooks()
    return model
