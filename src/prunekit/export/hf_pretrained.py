"""Hugging Face round trip: a compact model as `save_pretrained` files that `from_pretrained` loads.

`save_pretrained(model, folder)` works where the model's config can express the smaller shapes:

- unstructured pruning (dense shapes with zeros, CSR layers written back dense) always;
- structured pruning when every changed width is a config field: GPT-2's FFN width
  (`n_inner`, one value for all layers), Wav2Vec2's feature-encoder channels (`conv_dim`, one
  per layer) and FFN width (`intermediate_size`).

Everything else raises a PrunekitError naming each module and why (pruned heads: the config has
one head count, with the head size tied to the hidden size; low-rank, sliced or int8 layers:
the architecture has no such layer). `save_compact` + `load_compact(folder, model=...)` stores
any compact model; this path is for tools that only read Hugging Face checkpoints.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.export.conv1d import is_hf_conv1d
from prunekit.export.layers import DenseLinear, SparseLinear
from prunekit.export.replace import replace_modules
from prunekit.export.sliced import TiedEmbedding


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def _why(m: nn.Module) -> str:
    """What a compact layer is, in words a config reader understands."""
    name = type(m).__name__
    if "LowRank" in name or getattr(m, "proj", None) is not None:
        return f"low rank ({name}), which the architecture has no layer for"
    if "Sliced" in name or isinstance(m, TiedEmbedding):
        return f"sliced ({name}: rows or columns removed), and the config has one width"
    if "Int8" in name or "quantized" in type(m).__module__:
        return f"int8 ({name}), which the architecture has no layer for"
    return f"a {name}, which the architecture has no layer for"


def _plain(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy with dense compact layers as plain torch modules, and the layers that cannot be."""
    problems: list[str] = []

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if isinstance(m, DenseLinear | SparseLinear):
            return _linear(m.weight.detach(), None if m.bias is None else m.bias.detach())
        if isinstance(m, TiedEmbedding) and m.proj is None and m.cols is None:
            return nn.Embedding.from_pretrained(m.weight.detach(), freeze=False)
        if type(m).__module__.startswith("prunekit.") or "quantized" in type(m).__module__:
            problems.append(f"{name} is {_why(m)}")
            return m
        return None

    plain = copy.deepcopy(model)
    replace_modules(plain, convert)
    return plain, problems


def _widths(model: nn.Module, suffix: str) -> list[int]:
    """Output widths of the Linear (or Conv1D) layers whose names end with `suffix`."""
    return [
        int(getattr(m, "out_features", None) or m.nf)
        for name, m in model.named_modules()
        if name.endswith(suffix)
    ]


def _one(values: list[int], field: str, problems: list[str]) -> int | None:
    if len(set(values)) > 1:
        problems.append(f"{field}: the layers keep {values} units, the config has one width")
        return None
    return values[0] if values else None


def _config_updates(model: nn.Module, config: Any, problems: list[str]) -> dict[str, Any]:
    """The config fields that express `model`'s widths (GPT-2, Wav2Vec2), else {}."""
    kind = getattr(config, "model_type", "")
    updates: dict[str, Any] = {}
    if kind == "gpt2":
        updates["n_inner"] = _one(_widths(model, "mlp.c_fc"), "n_inner", problems)
    if kind == "wav2vec2":
        widths = _widths(model, "feed_forward.intermediate_dense")
        updates["intermediate_size"] = _one(widths, "intermediate_size", problems)
        layers = [
            m for n, m in model.named_modules() if n.endswith("feature_extractor.conv_layers")
        ]
        if layers:
            updates["conv_dim"] = tuple(layer.conv.out_channels for layer in layers[0])
    heads = {
        n: m.num_heads
        for n, m in model.named_modules()
        if isinstance(getattr(m, "num_heads", None), int) and hasattr(m, "head_dim")
    }
    n_head = getattr(config, "num_attention_heads", None)
    for name, h in heads.items():
        if n_head is not None and h != n_head:
            problems.append(
                f"{name} keeps {h} of {n_head} heads: the config has one head count (and ties "
                "the head size to the hidden size)"
            )
    return {k: v for k, v in updates.items() if v is not None}


def _copy_into(target: nn.Module, source: nn.Module, problems: list[str]) -> None:
    """Copy every tensor of `source` into the same-named one of `target` (Conv1D transposed)."""
    for name, t_mod in target.named_modules():
        try:
            s_mod = source.get_submodule(name)
        except AttributeError:
            problems.append(f"{name} (missing)")
            continue
        for key, t in list(t_mod.named_parameters(recurse=False)) + list(
            t_mod.named_buffers(recurse=False)
        ):
            s = getattr(s_mod, key, None)
            if not isinstance(s, torch.Tensor):
                continue
            s = s.detach()
            if is_hf_conv1d(t_mod) and isinstance(s_mod, nn.Linear) and key == "weight":
                s = s.t()
            if tuple(s.shape) != tuple(t.shape):
                problems.append(
                    f"{name}.{key} is {list(s.shape)}, the config gives {list(t.shape)}"
                )
                continue
            with torch.no_grad():
                t.copy_(s)


def save_pretrained(model: nn.Module, folder: str | Path) -> Path:
    """Write `model` (compact or pruned-and-finalized) with Hugging Face's `save_pretrained`.

    Args:
        model: a Hugging Face `PreTrainedModel` (possibly compact, see the module docstring).
        folder: where `type(model).from_pretrained(folder)` will load it from.

    Returns:
        The folder.

    Raises:
        PrunekitError: not a Hugging Face model, or shapes / layers its config cannot express
            (every one is named).
    """
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(model, "save_pretrained", None)):
        raise PrunekitError(
            f"{type(model).__name__} is not a Hugging Face model: use save_compact(model, "
            "manifest, folder) and load_compact(folder, model=...)"
        )
    plain, problems = _plain(model)
    new_config = copy.deepcopy(config)
    for field, value in _config_updates(plain, config, problems).items():
        setattr(new_config, field, value)
    if not problems:
        target = type(model)(new_config).eval()
        _copy_into(target, plain, problems)
    if problems:
        raise PrunekitError(
            f"{type(config).__name__} cannot express this compact model: {'; '.join(problems)}; "
            "save it with save_compact(model, manifest, folder) and load_compact(folder, "
            "model=...) instead"
        )
    folder = Path(folder)
    target.save_pretrained(folder)
    return folder
