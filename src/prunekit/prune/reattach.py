"""Load a masked (not finalized) checkpoint into a freshly built plain model.

`attach_masks_from_state_dict(model, sd)` prepares `model` so that `model.load_state_dict(sd)`
(or safetensors' `load_model`) restores a pruned model exactly:

- every tensor with a mask key in `sd` gets a `Mask`; tensors tied to it in `model` (an embedding
  and its output layer) share that mask, even when the checkpoint kept only one of their names
  (`safetensors.torch.save_model` drops the duplicates);
- a module whose checkpoint holds factors (`<module>.U`, `<module>.V` and a mask on `d`) is first
  replaced by the factorized layer of that rank (`FactorizedLinear`, `FactorizedConv`,
  `FactorizedEmbedding`; tied modules share one set of factors), so a factorized checkpoint
  loads without re-creating a pruner.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import PrunekitError
from prunekit.prune.channels import CONVS
from prunekit.prune.factorized import (
    FACTORIZED_TYPES,
    FactorizedConv,
    FactorizedEmbedding,
    FactorizedLinear,
)
from prunekit.prune.masks import Mask, attach_mask, get_mask, original
from prunekit.prune.scope import _is_conv1d

_SUFFIX = ".0.mask"


def _mask_keys(state_dict: Mapping[str, Tensor]) -> list[tuple[str, str, str]]:
    """(key, module name, attr) of every mask key of a checkpoint."""
    out = []
    for key in state_dict:
        if ".parametrizations." not in f".{key}" or not key.endswith(_SUFFIX):
            continue
        head, _, rest = f".{key}".rpartition(".parametrizations.")
        out.append((key, head[1:], rest[: -len(_SUFFIX)]))
    return out


def _holders(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """id(stored parameter) -> every (module, attr) holding it (tied tensors have several)."""
    out: dict[int, list[tuple[nn.Module, str]]] = {}
    for m in model.modules():
        if isinstance(m, parametrize.ParametrizationList | Mask):
            continue
        params = dict(m._parameters)
        if parametrize.is_parametrized(m):  # weight_norm keeps original0/1: not a holder
            params.update(
                {a: getattr(pl, "original", None) for a, pl in m.parametrizations.items()}
            )
        for attr, p in params.items():
            if isinstance(p, Tensor):
                out.setdefault(id(p), []).append((m, attr))
    return out


def _places(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """id(module) -> every (parent, child name) it is reachable from."""
    out: dict[int, list[tuple[nn.Module, str]]] = {}
    for m in model.modules():
        for name, child in m.named_children():
            out.setdefault(id(child), []).append((m, name))
    return out


def _factorized_like(m: nn.Module, rank: int) -> nn.Module:
    """An uninitialized factorized layer of `rank` shaped like `m` (bias Parameter reused)."""
    if isinstance(m, nn.Embedding):
        return FactorizedEmbedding(m.num_embeddings, m.embedding_dim, rank, m.padding_idx)
    if isinstance(m, CONVS):
        return FactorizedConv(m, rank)
    w = original(m, "weight")
    i, o = (w.shape[0], w.shape[1]) if _is_conv1d(m) else (w.shape[1], w.shape[0])
    new = FactorizedLinear(int(i), int(o), rank, bias=False, device=w.device, dtype=w.dtype)
    new.bias = m.bias
    return new


def _refactorize(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Replace each module the checkpoint stores factorized by a factorized layer (in place)."""
    holders, places = _holders(model), _places(model)
    for key, name, attr in _mask_keys(state_dict):
        if attr != "d" or f"{name}.U" not in state_dict:
            continue
        m = model.get_submodule(name)
        if isinstance(m, FACTORIZED_TYPES) or not hasattr(m, "weight"):
            continue
        tied = [h for h, a in holders.get(id(original(m, "weight")), []) if a == "weight"]
        tied.sort(key=lambda h: not isinstance(h, nn.Embedding))  # the embedding owns factors
        base = _factorized_like(tied[0], int(state_dict[key].shape[0]))
        for h in tied:
            new = base if h is tied[0] else FactorizedLinear.from_factors(
                base.U, base.d, base.V, h.bias
            )  # fmt: skip
            for parent, child in places.get(id(h), []):
                setattr(parent, child, new)


def attach_masks_from_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> int:
    """Attach a mask to every tensor that has one in a masked checkpoint, before loading it.

    Use it to load a checkpoint of a pruned (not finalized) model into a freshly built plain
    model: `attach_masks_from_state_dict(model, sd); model.load_state_dict(sd)` (see the module
    docstring for tied tensors and factorized layers).

    Args:
        model: a plain model of the checkpoint's architecture (modified in place).
        state_dict: the checkpoint (keys like `fc.parametrizations.weight.0.mask`).

    Returns:
        How many (module, tensor) places got a mask (tied aliases included).

    Raises:
        PrunekitError: a mask key names a module or tensor the model does not have.
    """
    _refactorize(model, state_dict)
    holders = _holders(model)
    count = 0
    for key, mod_name, attr in _mask_keys(state_dict):
        try:
            m = model.get_submodule(mod_name)
            p = original(m, attr)
        except AttributeError:
            raise PrunekitError(
                f"checkpoint key {key!r} has no matching tensor {mod_name}.{attr} in the model: "
                "build the model with the checkpoint's architecture"
            ) from None
        shared = next((get_mask(h, a) for h, a in holders.get(id(p), []) if get_mask(h, a)), None)
        for h, a in holders.get(id(p), [(m, attr)]):
            if get_mask(h, a) is None:
                shared = attach_mask(h, a, shared)
                count += 1
    return count
