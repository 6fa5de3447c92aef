"""Load any language-model artifact prunekit writes: (model, tokenizer, description).

One entry point, `load_lm_artifact(path)`, for everything `prunekit eval` (and the speech
decoder's fusion LM) may be handed:

- a checkpoint folder (`state.json`): a dense baseline (`baseline/checkpoints/best`), a pruned run
  (`prune/<name>/checkpoints/last`, `prune/<name>/size-<N>/checkpoints/last`, the `reached`
  snapshots), with its masks / factorized layers rebuilt from the pruning config it records;
- a run folder holding `checkpoints/`: the checkpoint its report evaluates (`best` for a dense
  run, `last` for a pruned one);
- a compact export (`manifest.json`, from `prunekit export`), through `export.load_compact`.

The tokenizer is the one saved with the model (`tokenizer.model` inside the checkpoint or export
folder); a checkpoint written before tokenizers were stored in it falls back to the run's
`tokenizer.model` in a parent folder. No tokenizer is ever trained here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.data import Tokenizer, load_tokenizer, tokenizer_from_bytes
from prunekit.errors import PrunekitError
from prunekit.export.io import MANIFEST, load_compact, read_manifest
from prunekit.lowrank.factor import factorize
from prunekit.models import build_model
from prunekit.prune import PruneConfig, Pruner
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_file, read_checkpoint_state

TOKENIZER_FILE = "tokenizer.model"
"""Name of the tokenizer file inside checkpoint and export folders (and run folders)."""


@dataclass
class LMArtifact:
    """A loaded language model with its own tokenizer.

    Attributes:
        model: the model in eval mode (masked / factorized as trained, or compact).
        tokenizer: the tokenizer the model was trained with.
        description: JSON-able facts: kind, path, step, model_config, prune config, tokenizer
            source, the run's recipe when recorded.
    """

    model: nn.Module
    tokenizer: Tokenizer
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def recipe(self) -> dict[str, Any] | None:
        """The recipe of the run that made the model, when the artifact records it."""
        return self.description.get("recipe")


def load_lm_checkpoint(path: str | Path) -> nn.Module:
    """Rebuild a checkpoint's model with the masks / factorized layers its pruning config made.

    Returns:
        The model (train mode, forward hooks of the pruner removed); dense if never pruned.

    Raises:
        PrunekitError: not a checkpoint, no model_config, or weights that do not fit.
    """
    path = Path(path)
    state = read_checkpoint_state(path)["state"]
    if not state.get("model_config"):
        raise PrunekitError(
            f"checkpoint {path} has no model_config: pass a checkpoint written by prunekit"
        )
    model = build_model(state["model_config"])
    run = state.get("run") or {}
    if run.get("prune"):
        pruner = Pruner(model, PruneConfig.from_dict(run["prune"])).attach()
        pruner.remove_hooks()
    if run.get("ranks"):  # a low-rank stage-2 checkpoint (prunekit.pipelines.lowrank): W = U V
        factorize(model, run["ranks"])
    load_checkpoint(path, model)
    return model


def resolve_checkpoint(path: Path) -> Path:
    """`path` itself if it is a checkpoint; for a run folder, the checkpoint its report evaluates.

    Raises:
        PrunekitError: neither a checkpoint nor a run folder.
    """
    if (path / "state.json").is_file():
        return path
    ckpts = path / "checkpoints"
    last = ckpts / "last"
    if (last / "state.json").is_file():
        pruned = (read_checkpoint_state(last)["state"].get("run") or {}).get("prune")
        best = ckpts / "best"
        return last if pruned or not (best / "state.json").is_file() else best
    raise PrunekitError(
        f"{path} is not a prunekit checkpoint (no state.json), run folder (no checkpoints/) or "
        f"export (no {MANIFEST}): pass e.g. runs/demo/baseline/checkpoints/best or a folder "
        "written by `prunekit export`"
    )


def _parent_tokenizer(path: Path) -> Path | None:
    """A run's tokenizer.model in a parent folder (checkpoints written before they held one)."""
    for parent in list(path.resolve().parents)[:5]:
        for candidate in (parent / TOKENIZER_FILE, parent / "baseline" / TOKENIZER_FILE):
            if candidate.is_file():
                return candidate
    return None


def _export_file(folder: Path, manifest: dict[str, Any], name: str) -> bytes | None:
    """An extra file of an export folder, checked against the sha256 its manifest records."""
    file = folder / name
    if not file.is_file():
        return None
    data = file.read_bytes()
    want = (manifest.get("files") or {}).get(name)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise PrunekitError(
            f"{file} does not match the sha256 in {folder / MANIFEST} (corrupted or changed "
            "after the export): export the model again"
        )
    return data


def _find_tokenizer(
    folder: Path, given: Path | None, own: bytes | None, flag: str
) -> tuple[Tokenizer, str]:
    """The tokenizer to score with: `given`, else the folder's own (`own`: its checked bytes),
    else a run's tokenizer in a parent folder (`flag`: how the caller passes one)."""
    if given is not None:
        return load_tokenizer(given), str(given)
    if own is not None:
        where = str(folder / TOKENIZER_FILE)
        return tokenizer_from_bytes(own, where), where
    found = _parent_tokenizer(folder)
    if found is None:
        raise PrunekitError(
            f"{folder} holds no {TOKENIZER_FILE} (it was written by an older prunekit) and none "
            f"was found in its parent folders: pass the run's tokenizer.model with {flag}"
        )
    return load_tokenizer(found), f"{found} (found in a parent folder, not recorded)"


def _check_vocab(config: dict[str, Any], tokenizer: Tokenizer, source: str, flag: str) -> None:
    vocab = config.get("vocab_size")
    if vocab is not None and vocab != tokenizer.vocab_size:
        raise PrunekitError(
            f"tokenizer {source} has {tokenizer.vocab_size} tokens but the model has {vocab}: "
            f"pass the tokenizer saved with this model ({flag})"
        )


def _checkpoint_kind(run: dict[str, Any]) -> str:
    if run.get("prune"):
        return "pruned checkpoint"
    return "low-rank checkpoint" if run.get("ranks") else "checkpoint"


def _checkpoint_artifact(path: Path, tokenizer: Path | None, flag: str) -> LMArtifact:
    ckpt = resolve_checkpoint(path)
    state = read_checkpoint_state(ckpt)["state"]
    model = load_lm_checkpoint(ckpt).eval()
    own = read_checkpoint_file(ckpt, TOKENIZER_FILE)
    tok, source = _find_tokenizer(ckpt, tokenizer, own, flag)
    _check_vocab(state["model_config"], tok, source, flag)
    run = state.get("run") or {}
    desc = {
        "kind": _checkpoint_kind(run),
        "path": str(ckpt),
        "step": state.get("step"),
        "model_config": state["model_config"],
        "prune": run.get("prune"),
        "tokenizer": source,
        "recipe": run.get("recipe"),
    }
    return LMArtifact(model, tok, desc)


def _export_artifact(path: Path, tokenizer: Path | None, flag: str) -> LMArtifact:
    manifest = read_manifest(path)
    model = load_compact(path).eval()
    source = manifest.get("source") or {}
    if tokenizer is None and not (path / TOKENIZER_FILE).is_file() and source.get("checkpoint"):
        origin = Path(source["checkpoint"])
        if (origin / TOKENIZER_FILE).is_file():
            tokenizer = origin / TOKENIZER_FILE
    own = _export_file(path, manifest, TOKENIZER_FILE)
    tok, where = _find_tokenizer(path, tokenizer, own, flag)
    _check_vocab(manifest["model_config"], tok, where, flag)
    desc = {
        "kind": "compact export",
        "path": str(path),
        "step": None,
        "model_config": manifest["model_config"],
        "prune": source.get("prune"),
        "tokenizer": where,
        "recipe": source.get("recipe"),
        "summary": manifest.get("summary"),
    }
    return LMArtifact(model, tok, desc)


def load_lm_artifact(
    path: str | Path,
    *,
    tokenizer: str | Path | None = None,
    tokenizer_flag: str = "--tokenizer",
) -> LMArtifact:
    """Load any LM checkpoint, run folder or compact export prunekit writes (see the module doc).

    Args:
        path: the checkpoint, run or export folder.
        tokenizer: a tokenizer file to use instead of the one saved with the model.
        tokenizer_flag: how the caller's user passes one (named in error messages).

    Returns:
        The model (eval mode), its tokenizer and a description.

    Raises:
        PrunekitError: an unknown or corrupt folder, or no tokenizer that fits the model.
    """
    path = Path(path)
    given = Path(tokenizer) if tokenizer is not None else None
    if not path.is_dir():
        raise PrunekitError(
            f"{path} does not exist or is not a folder: pass a checkpoint folder such as "
            "runs/demo/baseline/checkpoints/best, or an export folder"
        )
    if (path / MANIFEST).is_file():
        return _export_artifact(path, given, tokenizer_flag)
    return _checkpoint_artifact(path, given, tokenizer_flag)
