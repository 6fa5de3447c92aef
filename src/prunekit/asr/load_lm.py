"""`load_lm(path)`: any prunekit LM artifact -> (model in eval mode, its tokenizer), for decoding.

A thin view of `prunekit.pipelines.lm_artifact.load_lm_artifact`, the one loader `prunekit eval`
uses too: a training checkpoint (dense; pruned, with its masks / factorized layers re-attached
from the pruning config it records; low-rank), a run folder, or a compact export folder
(`prunekit export`). The tokenizer is the file given, else the one saved inside the checkpoint or
export (sha256-checked), else a run's `tokenizer.model` in a folder above it (checkpoints written
before they held one), or beside the checkpoint an export records as its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from prunekit.data.tokenizers import Tokenizer

TOKENIZER_FLAG = "--lm-tokenizer (or lm.tokenizer in a recipe)"
KINDS = {"compact export": "export"}  # lm_artifact's kind -> the name the speech reports use


@dataclass
class LoadedLM:
    """A decoding-ready LM: the model (eval mode), its tokenizer, and what was loaded."""

    model: nn.Module
    tokenizer: Tokenizer
    kind: str  # "checkpoint", "pruned checkpoint", "low-rank checkpoint" or "export"
    path: Path


def load_checkpoint_lm(path: Path) -> tuple[nn.Module, bool]:
    """A checkpoint's model with its pruning masks re-attached: (model in eval mode, pruned?)."""
    from prunekit.pipelines.lm_artifact import load_lm_checkpoint
    from prunekit.train.checkpoint import read_checkpoint_state

    pruned = bool((read_checkpoint_state(path)["state"].get("run") or {}).get("prune"))
    return load_lm_checkpoint(path).eval(), pruned


def load_lm(path: str | Path, tokenizer: str | Path | None = None) -> LoadedLM:
    """Load an LM checkpoint, run or export folder and its tokenizer (see the module docstring).

    Raises:
        PrunekitError: a missing path, a folder that is none of these, no tokenizer found.
    """
    from prunekit.pipelines.lm_artifact import load_lm_artifact

    art = load_lm_artifact(path, tokenizer=tokenizer, tokenizer_flag=TOKENIZER_FLAG)
    kind = art.description["kind"]
    return LoadedLM(art.model, art.tokenizer, KINDS.get(kind, kind), Path(path))
