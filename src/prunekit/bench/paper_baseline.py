"""The grid's portable baseline: the trained dense weights kept beside the results.

A grid's `runs/` folder (every checkpoint) is large and need not survive a sitting; the dense
baseline every pruning cell starts from must. When the baseline cell finishes, its best weights
are written to `<grid>/baseline/` (a model-only checkpoint: model.safetensors + state.json, a few
MB) with the sha256 of the weights and of the tokenizer. A later sitting without `runs/` prunes
from that copy, after checking that its tokenizer (retrained from the corpus, deterministic) is
byte-for-byte the one the baseline was trained with.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol

from prunekit.errors import PrunekitError
from prunekit.export.io import file_sha256
from prunekit.pipelines.lm_compress import load_trained
from prunekit.train.checkpoint import read_checkpoint_state, save_checkpoint

PORTABLE_DIR = "baseline"


class _Saveable(Protocol):
    def save(self, path: Path) -> None: ...


def tokenizer_sha256(tokenizer: _Saveable) -> str:
    """Hex sha256 of the tokenizer as saved (the sentencepiece model proto, or the vocabulary)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer"
        tokenizer.save(path)
        return file_sha256(path)


def export_baseline(checkpoint: Path, dest: Path, tokenizer: _Saveable) -> dict[str, Any]:
    """Write `checkpoint`'s model (no optimizer) to `dest`, atomically.

    Returns:
        {"weights_sha256", "tokenizer_sha256"}: to record in the baseline cell's JSON.
    """
    model = load_trained(checkpoint)
    state = read_checkpoint_state(checkpoint)["state"]
    keep = {k: state[k] for k in ("model_config", "step") if k in state}
    fingerprint = {"tokenizer_sha256": tokenizer_sha256(tokenizer)}
    save_checkpoint(dest, model, {**keep, **fingerprint, "portable_baseline": True})
    return {"weights_sha256": file_sha256(dest / "model.safetensors"), **fingerprint}


def check_baseline(dest: Path, tokenizer: _Saveable, recorded: dict[str, Any]) -> None:
    """Refuse a portable baseline whose weights or tokenizer are not the recorded ones.

    Args:
        dest: the portable baseline folder.
        tokenizer: the tokenizer this invocation prepared.
        recorded: the baseline cell's JSON (holds the two sha256 values).

    Raises:
        PrunekitError: a weights file or tokenizer that differs from the record.
    """
    weights = recorded.get("weights_sha256")
    if weights and file_sha256(dest / "model.safetensors") != weights:
        raise PrunekitError(
            f"{dest}/model.safetensors is not the baseline the finished cells were pruned from "
            "(sha256 differs): restore it from git, or start a new --out"
        )
    tok = recorded.get("tokenizer_sha256")
    if tok and tokenizer_sha256(tokenizer) != tok:
        raise PrunekitError(
            "this corpus gives another tokenizer than the one the baseline was trained with "
            "(sha256 differs): use the same corpus and tokenizer settings, or start a new --out"
        )
