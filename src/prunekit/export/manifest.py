"""The compact format's manifest: per-layer records, the tensor index, and rebuilding a model.

manifest.json (next to weights.safetensors) holds:

- `format`, `format_version`, `model_config` (the dense base model, `build_model` input; None for
  a model prunekit did not build), `root` (the model class: TransformerLM, RNNLM, CompactRNNLM,
  QuantizedRNNLM, or "foreign" for any other), `model_class` (its module and name), `attrs`
  (attributes export changed, e.g. the head count of a foreign attention module);
- `layers`: {module path: {"kind": dense | lowrank | csr | int8 | int8_lowrank | sliced |
  lowrank_embedding | rnn | int8_rnn | linear_rnn | linear, shapes, ranks, quant params}}, parents
  before children (see `prunekit.export.records`);
- `tensors`: {key: {"shape", "dtype"}} for every tensor of the weights file, and `weights`:
  {"file", "bytes", "sha256"};
- what `compact` decided: `structure` (kept heads / units / rows per module), `factorized`
  (ranks), `choices` (dense vs CSR per layer with the measured µs and ratio), `int8_choices`,
  `options`, `summary` (params, bytes, FLOPs vs the dense base).

Every other tensor (LayerNorms, positional tables, ...) belongs to the base model's own modules
and is stored under its `state_dict` key. Rebuilding needs `prunekit.models` and the compact
layers only (no pruning code, no pickle), and checks every shape before anything is returned.
A foreign model is rebuilt inside the dense model the caller passes (built the same way): the
recorded layers replace its modules, `attrs` are set and the other tensors are loaded into it;
everything is checked before the model is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.export.linear_rnn import CompactRNNLM
from prunekit.export.quantize import QuantizedRNNLM
from prunekit.export.records import BY_KIND, Placeholder, dtype_name, handler_for
from prunekit.export.replace import set_module
from prunekit.models.acoustic import CTCAcousticModel
from prunekit.models.registry import build_model
from prunekit.models.rnn_lm import RNNLM
from prunekit.models.transformer_lm import TransformerLM

FORMAT, FORMAT_VERSION = "prunekit-compact", 1
FOREIGN = "foreign"
ROOTS: dict[str, type[nn.Module]] = {
    "TransformerLM": TransformerLM,
    "RNNLM": RNNLM,
    "CompactRNNLM": CompactRNNLM,
    "QuantizedRNNLM": QuantizedRNNLM,
    "CTCAcousticModel": CTCAcousticModel,
}
MISMATCH = "the manifest does not match its weights; re-export the model"


def layer_records(model: nn.Module) -> tuple[dict[str, dict[str, Any]], dict[str, Tensor]]:
    """({path: record}, {tensor key: tensor}) of every compact layer of `model`, parents first."""
    records: dict[str, dict[str, Any]] = {}
    tensors: dict[str, Tensor] = {}

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            h = handler_for(child)
            if h is not None:
                meta, ts = h.save(child)
                records[path] = {"kind": h.kind, **meta}
                tensors.update({f"{path}.{k}": v for k, v in ts.items()})
            if h is None or h.container:
                visit(f"{path}.", child)

    visit("", model)
    _share_tied(records, tensors)
    return records, tensors


def _storage_key(t: Tensor) -> tuple:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())


def _share_tied(records: dict[str, dict[str, Any]], tensors: dict[str, Tensor]) -> None:
    """Let each tied embedding name the output layer's tensor instead of storing a copy."""
    for path, rec in records.items():
        if rec["kind"] != "tied_embedding":
            continue
        for field in ("table", "proj"):
            own = tensors.get(f"{path}.{field}")
            if own is None:
                continue
            key = next(
                (k for k, t in tensors.items()
                 if not k.startswith(f"{path}.") and _storage_key(t) == _storage_key(own)),
                None,
            )  # fmt: skip
            if key is not None:
                rec[field] = key
                del tensors[f"{path}.{field}"]


def _under(key: str, paths: Mapping[str, Any]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:i]) in paths for i in range(1, len(parts)))


def plain_tensors(model: nn.Module, records: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state_dict entries of `model` outside every recorded layer."""
    return {k: v for k, v in model.state_dict().items() if not _under(k, records)}


def root_name(model: nn.Module) -> str:
    """The manifest's name for `model`'s class: a prunekit root, or FOREIGN for any other."""
    name = type(model).__name__
    return name if ROOTS.get(name) is type(model) else FOREIGN


def class_path(model: nn.Module) -> str:
    """`module.QualName` of the model's class (recorded, and checked on a foreign load)."""
    return f"{type(model).__module__}.{type(model).__qualname__}"


def skeleton(
    config: Mapping[str, Any], root: str, records: Mapping[str, Any], device: str = "meta"
) -> nn.Module:
    """The base model with a `Placeholder` at every outermost recorded path (tensors on `device`,
    uninitialized).

    Raises:
        PrunekitError: an unknown root, a config `build_model` rejects, or a recorded path that
            the base model does not have.
    """
    if root not in ROOTS:
        raise PrunekitError(f"manifest root {root!r} is unknown: expected one of {list(ROOTS)}")
    with torch.device("meta"):
        model = build_model(config)
    if not issubclass(ROOTS[root], type(model)):
        raise PrunekitError(
            f"manifest root {root!r} does not fit model_config arch {config.get('arch')!r}: "
            f"{MISMATCH}"
        )
    model.__class__ = ROOTS[root]
    for path in records:
        if _under(path, records):
            continue
        try:
            set_module(model, path, Placeholder())
        except AttributeError:
            raise PrunekitError(
                f"manifest.json has a layer at {path!r}, which the base model does not have: "
                f"{MISMATCH}"
            ) from None
    return model if device == "meta" else model.to_empty(device=device)


def tensor_index(tensors: Mapping[str, Tensor]) -> dict[str, dict[str, Any]]:
    """{key: {"shape", "dtype"}} of plain tensors."""
    return {k: {"shape": list(v.shape), "dtype": dtype_name(v)} for k, v in tensors.items()}


def _shape_error(key: str, where: str, got: Any, want: Any) -> PrunekitError:
    return PrunekitError(
        f"tensor {key!r} is {got} in weights.safetensors but {want} in {where}: {MISMATCH}"
    )


def check_index(index: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
    """Raise unless the weights hold exactly the tensors the manifest lists, shapes and dtypes."""
    for key in index:
        if key not in tensors:
            raise PrunekitError(
                f"manifest.json lists tensor {key!r} but weights.safetensors does not have it: "
                f"{MISMATCH}"
            )
    for key, t in tensors.items():
        if key not in index:
            raise PrunekitError(
                f"weights.safetensors has tensor {key!r}, which manifest.json does not list: "
                f"{MISMATCH}"
            )
        want = index[key]
        got = {"shape": list(t.shape), "dtype": dtype_name(t)}
        if got != {"shape": want.get("shape"), "dtype": want.get("dtype")}:
            raise _shape_error(key, "manifest.json", got, want)


def check_layers(records: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> set[str]:
    """Raise unless each layer record finds its tensors with the shapes its meta implies.

    Returns:
        The tensor keys the records claim.
    """
    claimed: set[str] = set()
    for path, rec in records.items():
        h = BY_KIND.get(rec.get("kind")) if isinstance(rec, Mapping) else None
        if h is None:
            kind = rec.get("kind") if isinstance(rec, Mapping) else rec
            raise PrunekitError(
                f"manifest.json layer {path!r} has kind {kind!r}, which this prunekit cannot "
                f"build: expected one of {sorted(BY_KIND)}; re-export with this version"
            )
        try:
            expected = h.expected(rec)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PrunekitError(
                f"manifest.json layer {path!r} ({rec['kind']}) is incomplete ({exc!r}): {MISMATCH}"
            ) from None
        for field, (shape, dtype) in expected.items():
            key = f"{path}.{field}"
            if key not in tensors:
                raise PrunekitError(
                    f"layer {path!r} ({rec['kind']}) needs tensor {key!r}, which "
                    f"weights.safetensors does not have: {MISMATCH}"
                )
            got = {"shape": list(tensors[key].shape), "dtype": dtype_name(tensors[key])}
            want = {"shape": list(shape), "dtype": dtype}
            if got != want:
                raise _shape_error(key, f"layer {path!r} of manifest.json", got, want)
            claimed.add(key)
    return claimed


def _check_plain_keys(expected: Mapping[str, list[int]], plain: Mapping[str, Tensor], base: str):
    for key in sorted(set(expected) | set(plain)):
        if key not in plain:
            raise PrunekitError(f"weights.safetensors lacks {key!r} of {base}: {MISMATCH}")
        if key not in expected:
            raise PrunekitError(
                f"weights.safetensors has {key!r}, which neither a layer record nor {base} "
                f"uses: {MISMATCH}"
            )
        if list(plain[key].shape) != expected[key]:
            raise _shape_error(key, base, list(plain[key].shape), expected[key])


def _build_layers(records: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> dict:
    """{path: rebuilt layer} of every record (standalone; containers hold placeholders)."""
    layers = {}
    for path, rec in records.items():
        fields = {k[len(path) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{path}.")}
        try:
            layers[path] = BY_KIND[rec["kind"]].build(rec, fields)
        except PrunekitError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PrunekitError(
                f"layer {path!r} ({rec['kind']}) cannot be rebuilt from manifest.json "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): {MISMATCH}"
            ) from None
    return layers


def _place(model: nn.Module, manifest: Mapping[str, Any], layers: Mapping[str, nn.Module]) -> None:
    """Put the rebuilt layers in (parents first), link tied tensors, set recorded attributes."""
    records = manifest["layers"]
    for path, layer in layers.items():
        try:
            set_module(model, path, layer)
        except AttributeError:
            raise PrunekitError(
                f"manifest.json has a layer at {path!r} inside a layer that is not a container: "
                f"{MISMATCH}"
            ) from None
    missing = [n for n, m in model.named_modules() if isinstance(m, Placeholder)]
    if missing:
        raise PrunekitError(f"manifest.json has no record for layer {missing[0]!r}: {MISMATCH}")
    for path, rec in records.items():
        link = BY_KIND[rec["kind"]].link
        if link is not None:
            link(model, path, rec)
    for path, attrs in (manifest.get("attrs") or {}).items():
        for attr, value in attrs.items():
            setattr(model.get_submodule(path), attr, value)


def _check_into(model: nn.Module, manifest: Mapping[str, Any]) -> None:
    """Raise unless `model` is of the exported class and has every recorded path and attribute."""
    want, got = manifest.get("model_class"), class_path(model)
    if want is not None and want != got:
        raise PrunekitError(
            f"the export is of a {want} but model= is a {got}: pass the dense model built the "
            "same way as the exported one"
        )
    records = manifest["layers"]
    paths = [p for p in records if not _under(p, records)]
    paths += list(manifest.get("attrs") or {})
    for path in paths:
        try:
            m = model.get_submodule(path)
        except AttributeError:
            raise PrunekitError(
                f"manifest.json has a layer at {path!r}, which model= does not have: pass the "
                "dense model built the same way as the exported one"
            ) from None
        for attr in (manifest.get("attrs") or {}).get(path, {}):
            if not hasattr(m, attr):
                raise PrunekitError(f"model= has no {path}.{attr} to set: {MISMATCH}")


def build(
    manifest: Mapping[str, Any], tensors: Mapping[str, Tensor], model: nn.Module | None = None
) -> nn.Module:
    """Rebuild the compact model from a checked manifest and its tensors (eval mode).

    Args:
        manifest, tensors: the checked export.
        model: the dense model to load into (required for a FOREIGN root; else the base model
            is built from `model_config`). It is modified only after every check passed.

    Raises:
        PrunekitError: any disagreement between the manifest, the tensors and the base model;
            nothing is returned half-built.
    """
    records = manifest["layers"]
    claimed = check_layers(records, tensors)
    plain = {k: v for k, v in tensors.items() if k not in claimed}
    into = model is not None
    if model is None:
        if manifest["root"] == FOREIGN:
            raise PrunekitError(
                f"this export is of a {manifest.get('model_class')}, which prunekit cannot build: "
                "pass load_compact(folder, model=<the dense model built the same way>)"
            )
        model = skeleton(manifest["model_config"], manifest["root"], records)
        expected = {k: list(v.shape) for k, v in model.state_dict().items()}
        _check_plain_keys(expected, plain, "the base model")
        model = model.to_empty(device="cpu")
        model.load_state_dict(dict(plain), strict=True, assign=True)
    else:
        _check_into(model, manifest)
        expected = {
            k: list(v.shape) for k, v in model.state_dict().items() if not _under(k, records)
        }
        _check_plain_keys(expected, plain, "model=")
    layers = _build_layers(records, tensors)
    if into:  # the caller's own tensors take the exported values (before layers are swapped in)
        model.load_state_dict(dict(plain), strict=False)
    _place(model, manifest, layers)
    return model.requires_grad_(False).eval()
