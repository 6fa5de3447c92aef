"""Checkpoints as safetensors + JSON: model, optimizer, RNG states and run state. Never a pickle.

A checkpoint is a folder, written atomically (temp folder, then rename):
    model.safetensors   the model's state_dict (tied tensors stored once; masks included)
    extra.safetensors   optimizer tensors, RNG states, any extra tensors (e.g. pruner accumulators)
    state.json          model config, step, optimizer param groups, python/numpy RNG, run state
    <files>             any extra files the caller passes (e.g. tokenizer.model, so the
                        checkpoint can be evaluated on its own)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from prunekit.errors import PrunekitError

FORMAT_VERSION = 1


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-able metadata."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            name = f"optim.{idx}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().clone().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    items = [(k, v) for k, v in tensors.items() if k.startswith("optim.")]
    items += list(meta["scalars"].items())
    for name, value in items:
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    """Return the torch / numpy / python RNG states as (tensors, json)."""
    np_state = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
    }
    py = random.getstate()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore the RNG states written by `capture_rng`."""
    torch.set_rng_state(tensors["rng.torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state((name, keys, pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    state: dict[str, Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    files: dict[str, bytes] | None = None,
) -> None:
    """Write a checkpoint folder atomically.

    Args:
        path: the checkpoint folder (replaced if it exists).
        model: its state_dict is saved (tied tensors once).
        state: JSON-able run state (model config, step, metrics, ...).
        optimizer: saved with its tensors in extra.safetensors.
        extra_tensors: more named tensors to keep (e.g. pruner score accumulators).
        files: file name -> bytes, written into the folder too (e.g. the tokenizer).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, rng_meta = capture_rng()
        meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "state": state, "rng": rng_meta}
        if optimizer is not None:
            opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer)
            tensors.update(opt_tensors)
        for key, value in (extra_tensors or {}).items():
            tensors[f"extra.{key}"] = value.detach().contiguous()
        save_file(tensors, str(tmp / "extra.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """Read only the JSON run state of a checkpoint (e.g. to rebuild the model first).

    Raises:
        PrunekitError: missing folder or unreadable state.json.
    """
    path = Path(path)
    state_file = path / "state.json"
    if not state_file.is_file():
        raise PrunekitError(
            f"{path} is not a prunekit checkpoint (no state.json): pass a checkpoint folder "
            "such as runs/<name>/checkpoints/best"
        )
    try:
        meta = json.loads(state_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrunekitError(
            f"checkpoint {state_file} is corrupt ({exc}): delete the checkpoint and retrain"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise PrunekitError(
            f"checkpoint {path} has format {meta.get('format_version')}, expected "
            f"{FORMAT_VERSION}: re-create it with this prunekit version"
        )
    return meta


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise PrunekitError(
            f"checkpoint file {file} is corrupt or truncated ({str(exc).splitlines()[0]}): "
            "delete the checkpoint and resume from another one or retrain"
        ) from None


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng_state: bool = False,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load a checkpoint into `model` (and `optimizer`); validate everything before changing anything.

    Returns:
        (state, extra_tensors): the run state written by `save_checkpoint` and its extra tensors.

    Raises:
        PrunekitError: corrupt/truncated files, or weights that do not fit the model.
    """
    path = Path(path)
    meta = read_checkpoint_state(path)
    tensors = _load_tensors(path / "extra.safetensors")
    weights = _load_tensors(path / "model.safetensors")  # validates the file before touching model
    del weights
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    except RuntimeError as exc:
        raise PrunekitError(
            f"checkpoint {path} does not fit this model ({str(exc).splitlines()[0]}): "
            "build the model with the checkpoint's config"
        ) from None
    if missing or unexpected:
        raise PrunekitError(
            f"checkpoint {path} does not fit this model (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}): build the model with the checkpoint's config"
        )
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    if restore_rng_state:
        restore_rng(tensors, meta["rng"])
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    return meta["state"], extra
