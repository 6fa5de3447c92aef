"""Save and load compact models: a folder with weights.safetensors + manifest.json, never a pickle.

`save_compact(model, manifest, folder)` writes the folder atomically (a temporary folder, then a
rename), so a crash never leaves half an export. `load_compact(folder)` checks the manifest's
format, the weights file's size and sha256, every tensor's name, shape and dtype, and every layer
record before it returns the rebuilt model; on any mismatch it raises a one-line PrunekitError and
returns nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from prunekit.atomic import default_mode, make_temp_dir
from prunekit.errors import PrunekitError
from prunekit.export.manifest import (
    FOREIGN,
    FORMAT,
    FORMAT_VERSION,
    MISMATCH,
    build,
    check_index,
    class_path,
    layer_records,
    plain_tensors,
    root_name,
    skeleton,
    tensor_index,
)

WEIGHTS, MANIFEST = "weights.safetensors", "manifest.json"
OWN_FILES = {WEIGHTS, MANIFEST, "model.onnx", "tokenizer.model"}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_plain(config: Mapping[str, Any], root: str, records: Mapping, plain: Mapping) -> None:
    """Raise if the model has tensors outside the compact layers that the base model lacks."""
    expected = {k: list(v.shape) for k, v in skeleton(config, root, records).state_dict().items()}
    for key, t in plain.items():
        if expected.get(key) != list(t.shape):
            module = key.rpartition(".")[0]
            raise PrunekitError(
                f"cannot save {key!r} {list(t.shape)}: module {module!r} is neither a compact "
                "layer nor as in the base model; export models made by prunekit.export.compact"
            )
    for key in expected:
        if key not in plain:
            raise PrunekitError(f"cannot save: the model lacks {key!r} of its base model")


def _replace_folder(tmp: Path, folder: Path) -> None:
    if folder.exists():
        if not folder.is_dir() or {p.name for p in folder.iterdir()} - OWN_FILES:
            raise PrunekitError(
                f"refusing to replace {folder}: it holds other files than a compact export; "
                "pass a new or empty folder"
            )
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


def save_compact(
    model: nn.Module,
    manifest: Mapping[str, Any] | None,
    folder: str | Path,
    *,
    files: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write `model` (from `compact`) to `folder`/weights.safetensors + manifest.json atomically.

    Any model works: one prunekit builds (TransformerLM / RNNLM family) is rebuilt from its config
    by `load_compact(folder)`; any other (a Hugging Face model, your own nn.Module) is recorded
    as "foreign" and loaded into a dense model built the same way,
    `load_compact(folder, model=...)`.

    Args:
        model: a compact model (from `compact`), or any plain model.
        manifest: the dict `compact` returned, or None.
        folder: the export folder (replaced if it is an earlier export).
        files: more files for the folder, name -> bytes (e.g. "tokenizer.model"; names from
            `OWN_FILES` only, so a later export may replace the folder).

    Returns:
        The manifest as written.

    Raises:
        PrunekitError: a prunekit model with modules its config does not describe, or a folder
            holding other files.
    """
    from prunekit.models.registry import registered_config

    out = copy.deepcopy(dict(manifest or {}))
    root = root_name(model)
    config = (out.get("model_config") or registered_config(model)) if root != FOREIGN else None
    records, tensors = layer_records(model)
    plain = plain_tensors(model, records)
    if root != FOREIGN:
        _check_plain(config, root, records, plain)
    tensors = {k: v.detach().contiguous().clone() for k, v in {**tensors, **plain}.items()}
    attrs = {r["module"]: r["attrs"] for r in out.get("structure") or [] if r.get("attrs")}
    out.update(
        format=FORMAT, format_version=FORMAT_VERSION, model_config=config, root=root,
        model_class=class_path(model), attrs=attrs, layers=records, tensors=tensor_index(tensors),
    )  # fmt: skip
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(folder)  # permissions follow the umask
    try:
        meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
        save_file(tensors, str(tmp / WEIGHTS), metadata=meta)
        out["weights"] = {
            "file": WEIGHTS, "bytes": (tmp / WEIGHTS).stat().st_size, "sha256": file_sha256(tmp / WEIGHTS)
        }  # fmt: skip
        for name, data in (files or {}).items():
            if name not in OWN_FILES - {WEIGHTS, MANIFEST}:
                raise PrunekitError(f"cannot add {name!r} to an export: use one of {OWN_FILES}")
            (tmp / name).write_bytes(data)
            out.setdefault("files", {})[name] = file_sha256(tmp / name)
        (tmp / MANIFEST).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        for file in tmp.iterdir():
            os.chmod(file, default_mode(folder=False))  # safetensors creates its files 0600
        _replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest.json of a compact export, format-checked.

    Raises:
        PrunekitError: no manifest, invalid JSON, or another format / version.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise PrunekitError(
            f"{folder} is not a compact export (no {MANIFEST}): pass a folder written by "
            "`prunekit export`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrunekitError(f"{path} is not valid JSON ({exc}): re-export the model") from None
    if not isinstance(manifest, dict):
        raise PrunekitError(f"{path} is not a JSON object: re-export the model")
    fmt = (manifest.get("format"), manifest.get("format_version"))
    if fmt != (FORMAT, FORMAT_VERSION):
        raise PrunekitError(
            f"{path} has format {fmt[0]!r} version {fmt[1]!r}, expected {FORMAT!r} version "
            f"{FORMAT_VERSION}: re-export the model with this prunekit version"
        )
    for key in ("model_config", "root", "layers", "tensors", "weights"):
        if key not in manifest:
            raise PrunekitError(f"{path} lacks {key!r}: re-export the model")
    return manifest


def _read_weights(folder: Path, manifest: Mapping[str, Any], verify: bool) -> dict:
    info = manifest["weights"]
    path = folder / WEIGHTS
    if info.get("file") != WEIGHTS or not path.is_file():
        raise PrunekitError(f"{path} is missing: re-export the model")
    size = path.stat().st_size
    if size != info.get("bytes"):
        raise PrunekitError(
            f"{path} has {size} bytes but manifest.json says {info.get('bytes')}: the file is "
            "truncated or was replaced; re-export the model"
        )
    if verify and file_sha256(path) != info.get("sha256"):
        raise PrunekitError(f"{path} does not match manifest.json (sha256 differs): {MISMATCH}")
    try:  # fresh (64-byte aligned) copies: kernels then round exactly as before saving
        return {k: v.clone() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise PrunekitError(
            f"{path} is corrupt ({str(exc).splitlines()[0]}): re-export the model"
        ) from None


def load_compact(
    folder: str | Path, *, model: nn.Module | None = None, verify: bool = True
) -> nn.Module:
    """Rebuild a compact model from `folder` (see `save_compact`), in eval mode.

    Needs only prunekit.models and the compact layers: no pruning code, no pickle.

    Args:
        folder: the export folder.
        model: the dense model to load into, built the same way as the exported one (required
            for a model prunekit did not build, e.g. `GPT2LMHeadModel(config)`): its recorded
            layers are replaced, its other tensors take the exported values, and it is returned.
            It is left untouched when a check fails.
        verify: also check the weights file's sha256 against the manifest.

    Example:
        >>> small, manifest = compact(pruned_model)  # doctest: +SKIP
        >>> save_compact(small, manifest, "out/")  # doctest: +SKIP
        >>> loaded = load_compact("out/", model=GPT2LMHeadModel(config))  # doctest: +SKIP

    Raises:
        PrunekitError: a missing or corrupt file, a truncated weights file, or a manifest that
            does not match its weights (missing tensor, wrong shape or dtype); nothing is
            returned then.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:  # a manifest.json edited into other shapes of JSON must not end in a traceback
        tensors = _read_weights(folder, manifest, verify)
        check_index(manifest["tensors"], tensors)
        with torch.no_grad():
            return build(manifest, tensors, model)
    except PrunekitError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        raise PrunekitError(
            f"{folder / MANIFEST} is corrupt ({type(exc).__name__}: {str(exc)[:200]}): "
            "re-export the model"
        ) from None
