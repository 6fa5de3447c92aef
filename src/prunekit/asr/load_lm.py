"""`load_lm(path)`: any prunekit LM artifact -> (model in eval mode, its tokenizer), for decoding.

Covers a training checkpoint (dense; or pruned, with its masks / factorized layers re-attached
from the pruning config the checkpoint records) and a compact export folder (`prunekit export`,
loaded by `export.load_compact`). The tokenizer is the file given, else the first
`tokenizer.model` found in the artifact's folder or up to four folders above it (a run folder keeps
it beside `checkpoints/`; `prunekit run` keeps it in `baseline/`), or beside the checkpoint an
export records as its source.

This is the smallest loader the speech pipeline needs; a general artifact loader (issue 16) can
replace it: every caller goes through `load_lm`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.data.tokenizers import Tokenizer, load_tokenizer
from prunekit.errors import PrunekitError

TOKENIZER_FILE = "tokenizer.model"


@dataclass
class LoadedLM:
    """A decoding-ready LM: the model (eval mode), its tokenizer, and what was loaded."""

    model: nn.Module
    tokenizer: Tokenizer
    kind: str  # "checkpoint", "pruned checkpoint" or "export"
    path: Path


def find_tokenizer(path: Path, extra: list[Path] | None = None) -> Path | None:
    """The first tokenizer.model in `path`, its parents (4 levels, also their baseline/), `extra`."""
    folders = [path, *list(path.parents)[:4], *(extra or [])]
    for folder in folders:
        for candidate in (folder / TOKENIZER_FILE, folder / "baseline" / TOKENIZER_FILE):
            if candidate.is_file():
                return candidate
    return None


def load_checkpoint_lm(path: Path) -> tuple[nn.Module, bool]:
    """A checkpoint's model with its pruning masks re-attached: (model, pruned?)."""
    from prunekit.models import build_model
    from prunekit.prune import PruneConfig, Pruner
    from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state

    state = read_checkpoint_state(path)["state"]
    if not state.get("model_config"):
        raise PrunekitError(f"checkpoint {path} has no model_config: pass a prunekit LM checkpoint")
    model = build_model(state["model_config"])
    prune: dict[str, Any] | None = (state.get("run") or {}).get("prune")
    if prune:
        Pruner(model, PruneConfig.from_dict(prune)).attach().remove_hooks()  # masks stay
    load_checkpoint(path, model)
    return model.eval(), bool(prune)


def _export_source(path: Path) -> list[Path]:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    source = (manifest.get("source") or {}).get("checkpoint")
    return [Path(source)] if source else []


def load_lm(path: str | Path, tokenizer: str | Path | None = None) -> LoadedLM:
    """Load an LM checkpoint or export folder and its tokenizer (see the module docstring).

    Raises:
        PrunekitError: a missing path, a folder that is neither kind, no tokenizer found.
    """
    from prunekit.export.io import load_compact

    path = Path(path)
    if not path.is_dir():
        raise PrunekitError(
            f"LM {path} does not exist: pass a checkpoint folder (e.g. runs/demo/baseline/"
            "checkpoints/best) or an export folder"
        )
    if (path / "manifest.json").is_file():
        model, kind, extra = load_compact(path), "export", _export_source(path)
    elif (path / "state.json").is_file():
        model, pruned = load_checkpoint_lm(path)
        kind, extra = ("pruned checkpoint" if pruned else "checkpoint"), []
    else:
        raise PrunekitError(
            f"{path} is neither a checkpoint (state.json) nor an export folder (manifest.json): "
            "pass the folder prunekit wrote"
        )
    tok_path = Path(tokenizer) if tokenizer else find_tokenizer(path, extra)
    if tok_path is None:
        raise PrunekitError(
            f"no {TOKENIZER_FILE} found beside {path}: pass the LM's tokenizer (--lm-tokenizer, "
            "or lm.tokenizer in a recipe)"
        )
    return LoadedLM(model.eval(), load_tokenizer(tok_path), kind, path)
