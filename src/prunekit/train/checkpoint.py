"""Checkpoints as safetensors + JSON: model, optimizer, RNG states and run state. Never a pickle.

A checkpoint is a folder, written atomically (temp folder, then rename):
    model.safetensors   the model's state_dict (tied tensors stored once; masks included)
    extra.safetensors   optimizer tensors, RNG states, any extra tensors (e.g. pruner accumulators)
    state.json          model config, step, optimizer param groups, python/numpy RNG, run state,
                        and the sha256 of the two safetensors files (format 2)
    <files>             any extra files the caller passes (e.g. tokenizer.model, so the
                        checkpoint can be evaluated on its own); their sha256 is in state.json
                        too and `read_checkpoint_file` checks it

Loading checks the sha256 of both files, that every tensor is finite and that every tensor's
shape fits the model before the model is touched. A checkpoint with NaN or infinite weights is
never written. A process killed while replacing a checkpoint leaves the previous one as
`.<name>.old`; the next save or load puts it back.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from prunekit.atomic import default_mode, json_text, make_temp_dir, write_failed
from prunekit.errors import PrunekitError
from prunekit.export.io import file_sha256
from prunekit.seeding import capture_rng, restore_rng, rng_states, set_rng_states

__all__ = [
    "capture_rng",
    "load_checkpoint",
    "read_checkpoint_file",
    "read_checkpoint_state",
    "restore_rng",
    "save_checkpoint",
]

FORMAT_VERSION = 2  # 2: state.json holds the files' sha256
READABLE_VERSIONS = (1, 2)  # 1: written before the sha256 (e.g. committed portable baselines)
MODEL_FILE, EXTRA_FILE = "model.safetensors", "extra.safetensors"


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
        if not isinstance(value, torch.Tensor | int | float) or isinstance(value, bool):
            raise TypeError(f"optimizer state {name!r} is {type(value).__name__}")
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _check_like(saved: Any, live: Any, where: str) -> None:
    """Raise TypeError unless `saved` has the structure and value types of `live` (JSON-wise)."""
    if isinstance(live, dict):
        if not isinstance(saved, dict) or set(saved) != set(live):
            raise TypeError(f"{where} has other keys than this optimizer's")
        for key in live:
            _check_like(saved[key], live[key], f"{where}.{key}")
    elif isinstance(live, list | tuple):
        if not isinstance(saved, list | tuple) or len(saved) != len(live):
            raise TypeError(f"{where} should have {len(live)} entries")
        for i, (a, b) in enumerate(zip(saved, live, strict=True)):
            _check_like(a, b, f"{where}[{i}]")
    elif isinstance(live, bool) or live is None or isinstance(live, str):
        if type(saved) is not type(live):
            raise TypeError(f"{where} should be {type(live).__name__}")
    elif isinstance(live, int | float) and (
        isinstance(saved, bool) or not isinstance(saved, int | float)
    ):
        raise TypeError(f"{where} should be a number")


def _check_optimizer_state(saved: dict, optimizer: torch.optim.Optimizer) -> None:
    """Raise unless `saved` fits `optimizer`: same groups and parameter indices, and every
    per-parameter tensor (moments) shaped like its parameter."""
    live = optimizer.state_dict()["param_groups"]
    _check_like(saved["param_groups"], live, "optimizer.param_groups")
    if [g["params"] for g in saved["param_groups"]] != [g["params"] for g in live]:
        raise ValueError("optimizer.param_groups lists other parameters than this optimizer's")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for idx, entry in saved["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[idx].shape:
                raise ValueError(f"optimizer state {idx}.{key} has shape {list(value.shape)}")


def _corrupt(path: Path, exc: Exception) -> PrunekitError:
    first = (str(exc).splitlines() or [""])[0][:200]
    return PrunekitError(
        f"checkpoint {path / 'state.json'} is corrupt ({type(exc).__name__}: {first}): delete "
        "the checkpoint and resume from another one or retrain"
    )


# What interpreting a damaged state.json can raise (PrunekitError is a ValueError: re-raise it).
CORRUPT_STATE = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """Name of the first floating-point tensor holding NaN or +-inf, else None."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def restore_interrupted(path: str | Path, *, clean: bool = False) -> bool:
    """Finish what a killed `save_checkpoint` left; return whether a checkpoint is at `path`.

    A kill between its two renames leaves only `.<name>.old` (the previous checkpoint): it is
    put back. With `clean` (the writer's side), a stale `.<name>.old` beside a complete
    checkpoint and the temp folders of killed writes are removed too.
    """
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if old.is_dir() and not path.exists():
        os.replace(old, path)
    if clean and path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
    return path.is_dir()


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
        state: JSON-able run state (model config, step, metrics, ...); NaN / inf become null.
        optimizer: saved with its tensors in extra.safetensors.
        extra_tensors: more named tensors to keep (e.g. pruner score accumulators).
        files: file name -> bytes, written into the folder too (e.g. the tokenizer).

    Raises:
        PrunekitError: a weight is NaN or infinite (nothing is written), or the disk is full or
            read-only (the checkpoint that was at `path` stays).
    """
    path = Path(path)
    bad = first_nonfinite(model.state_dict())
    if bad is not None:
        raise PrunekitError(
            f"refusing to write checkpoint {path}: tensor {bad!r} holds NaN or infinite values "
            "(training diverged): lower the learning rate and start over"
        )
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        restore_interrupted(path, clean=True)
        tmp = make_temp_dir(path)
        _write_files(tmp, model, state, optimizer, extra_tensors or {}, files or {})
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, SafetensorError) as exc:
        raise write_failed(path, exc) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _write_files(
    tmp: Path,
    model: nn.Module,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None,
    extra_tensors: dict[str, torch.Tensor],
    files: dict[str, bytes],
) -> None:
    """The files of a checkpoint, into the (temporary) folder `tmp`."""
    own = {MODEL_FILE, EXTRA_FILE, "state.json"}
    for name, data in files.items():
        if name in own or Path(name).name != name or name.startswith("."):
            raise PrunekitError(f"cannot add a file named {name!r} to a checkpoint: rename it")
        (tmp / name).write_bytes(data)
    save_model(model, str(tmp / MODEL_FILE))
    tensors, rng_meta = capture_rng()
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "state": state, "rng": rng_meta}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
    for key, value in extra_tensors.items():
        tensors[f"extra.{key}"] = value.detach().contiguous()
    save_file(tensors, str(tmp / EXTRA_FILE))
    meta["files"] = {name: file_sha256(tmp / name) for name in (MODEL_FILE, EXTRA_FILE, *files)}
    (tmp / "state.json").write_text(json_text(meta, indent=1), encoding="utf-8")
    for file in tmp.iterdir():
        os.chmod(file, default_mode(folder=False))  # safetensors creates its files 0600


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """Read only the JSON run state of a checkpoint (e.g. to rebuild the model first).

    Raises:
        PrunekitError: missing folder or unreadable state.json.
    """
    path = Path(path)
    restore_interrupted(path)
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
    if not isinstance(meta, dict) or meta.get("format_version") not in READABLE_VERSIONS:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise PrunekitError(
            f"checkpoint {path} has format {version}, expected {FORMAT_VERSION}: "
            "re-create it with this prunekit version"
        )
    if not isinstance(meta.get("state"), dict) or not isinstance(meta.get("files", {}), dict):
        raise PrunekitError(
            f"checkpoint {state_file} is corrupt (no run state): delete the checkpoint and retrain"
        )
    return meta


def read_checkpoint_file(path: str | Path, name: str) -> bytes | None:
    """The bytes of an extra file saved with a checkpoint (`files=`), None if it has none.

    Raises:
        PrunekitError: not a checkpoint, or the file does not match its sha256 in state.json.
    """
    path = Path(path)
    meta = read_checkpoint_state(path)
    file = path / name
    if not file.is_file():
        return None
    data = file.read_bytes()
    want = meta.get("files", {}).get(name)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise PrunekitError(
            f"checkpoint file {file} does not match the sha256 in its state.json (corrupted "
            "or changed after it was written): delete the checkpoint and use another one"
        )
    return data


def _load_tensors(path: Path, name: str, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Read one safetensors file of a checkpoint after checking its sha256 (format 2)."""
    file = path / name
    want = meta.get("files", {}).get(name)
    if meta["format_version"] >= 2 and not isinstance(want, str):
        raise PrunekitError(
            f"checkpoint {path / 'state.json'} is corrupt (no sha256 for {name}): delete the "
            "checkpoint and resume from another one or retrain"
        )
    try:
        if want is not None and file_sha256(file) != want:
            raise PrunekitError(
                f"checkpoint file {file} does not match the sha256 in its state.json (corrupted "
                "or changed after it was written): delete the checkpoint and resume from "
                "another one (e.g. checkpoints/best) or retrain"
            )
        return load_file(str(file))
    except (SafetensorError, OSError, RuntimeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PrunekitError(
            f"checkpoint file {file} is corrupt or truncated ({first}): "
            "delete the checkpoint and resume from another one or retrain"
        ) from None


def _check_fits(path: Path, weights: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Raise, naming the tensor and both shapes, if a saved tensor cannot go into `model`."""
    bad = first_nonfinite(weights)
    if bad is not None:
        raise PrunekitError(
            f"checkpoint {path} holds NaN or infinite values in {bad!r} (written by a run that "
            "diverged): delete it and resume from an earlier checkpoint, or retrain with a "
            "lower train.lr"
        )
    own = model.state_dict()
    for name, t in weights.items():
        if name in own and own[name].shape != t.shape:
            raise PrunekitError(
                f"checkpoint {path} does not fit this model: tensor {name!r} has shape "
                f"{list(t.shape)} in {MODEL_FILE} but {list(own[name].shape)} in the model "
                "(built from the model_config in state.json): restore the checkpoint's "
                "state.json, or build the model with the config it was trained with"
            )


def _side_states(
    path: Path,
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    restore_rng_state: bool,
) -> tuple[dict | None, Any]:
    """The optimizer state and RNG states a checkpoint holds, checked but not applied yet."""
    bad = first_nonfinite({k: v for k, v in tensors.items() if not k.startswith("rng.")})
    if bad is not None:
        raise PrunekitError(
            f"checkpoint {path} holds NaN or infinite values in {bad!r}: delete it and resume "
            "from an earlier checkpoint, or retrain"
        )
    try:
        opt_state = rng = None
        if optimizer is not None:
            opt_state = _unflatten_optimizer(tensors, meta["optimizer"])
            _check_optimizer_state(opt_state, optimizer)
        if restore_rng_state:
            rng = rng_states(tensors, meta["rng"])
    except PrunekitError:
        raise
    except CORRUPT_STATE as exc:
        raise _corrupt(path, exc) from None
    return opt_state, rng


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
        PrunekitError: corrupt/truncated/changed files (sha256), NaN or infinite values, or
            weights that do not fit the model (naming the tensor and both shapes).
    """
    path = Path(path)
    meta = read_checkpoint_state(path)
    tensors = _load_tensors(path, EXTRA_FILE, meta)
    weights = _load_tensors(path, MODEL_FILE, meta)  # validates the file before touching model
    _check_fits(path, weights, model)
    del weights
    opt_state, rng = _side_states(path, meta, tensors, optimizer, restore_rng_state)
    try:
        missing, unexpected = load_model(model, str(path / MODEL_FILE), strict=False)
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
        try:
            optimizer.load_state_dict(opt_state)
        except CORRUPT_STATE as exc:
            raise _corrupt(path, exc) from None
    if rng is not None:
        set_rng_states(rng)
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    return meta["state"], extra
