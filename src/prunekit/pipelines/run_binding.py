"""A run folder is bound to what decides its results, so a rerun never mixes two runs.

`fingerprint.json` in a run folder holds the sha256 of the corpus text and every recipe value
that changes the trained weights: the tokenizer settings, the model's full config and the train
section. A later call that resumes into the folder must bring the same values, or:

- a baseline run (`prunekit run`, `prunekit train`) fails with one line naming what differs and
  the fix (`--out DIR` for a new run, `--no-resume` to replace it);
- a pruning section (derived from a baseline) is redone from scratch, with a warning; so are a
  recipe's `lowrank:` sections and narang prune sections, whose folders prunekit owns whole
  (`owned=True`: everything in them is deleted, not only prunekit's own file names).

What may change and still continue (`FREE_TRAIN_KEYS`): `train.steps` (more steps extend the run
from where it stopped, the learning-rate schedule then spanning the new total: recorded in
`steps_history` and in the report; fewer steps than already done is an error, see
`lm_baseline`), and what only changes logging, evaluation or speed: `eval_every`,
`checkpoint_every`, `log_every`, `eval_batch_size`, `threads`; and the recipe's `name`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json
from prunekit.config import RunConfig
from prunekit.data import Corpus
from prunekit.errors import PrunekitError

log = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.json"
FREE_TRAIN_KEYS = (
    "steps",
    "eval_every",
    "checkpoint_every",
    "log_every",
    "eval_batch_size",
    "threads",
)
OUTPUTS = ("checkpoints", "result.json", "metrics.json", "tokenizer.model", FINGERPRINT)
"""What a run folder holds that prunekit wrote (cleared on --no-resume or a redo), plus size-*/."""


def corpus_sha256(corpus: Corpus) -> str:
    """Hex sha256 of the corpus text, split by split (names and paths do not count)."""
    h = hashlib.sha256()
    for text in (corpus.train, corpus.valid, corpus.test):
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def bound_train(cfg: RunConfig) -> dict[str, Any]:
    """The train settings that change the weights (all but `FREE_TRAIN_KEYS`)."""
    train = cfg.train.model_dump(mode="json")
    return {k: v for k, v in train.items() if k not in FREE_TRAIN_KEYS}


def data_fingerprint(cfg: RunConfig, corpus_sha: str) -> dict[str, Any]:
    """The corpus text's hash and the tokenizer settings (the corpus path is not bound)."""
    data = cfg.data.model_dump(mode="json")
    data.pop("corpus")
    return {"corpus_sha256": corpus_sha, "data": data}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """'model.n_layer 2 -> 4, corpus sha256 1a2b3c4d -> 5e6f7a8b' (the first `limit` keys)."""
    a, b = _flat(old), _flat(new)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            x, y = a.get(key, "unset"), b.get(key, "unset")
            if key.endswith("sha256"):
                key, x, y = key.replace("_sha256", " sha256"), str(x)[:8], str(y)[:8]
            diffs.append(f"{key} {x} -> {y}")
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more


def read_fingerprint(folder: Path) -> dict[str, Any] | None:
    """The folder's fingerprint.json, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((folder / FINGERPRINT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def has_outputs(folder: Path, owned: bool = False) -> bool:
    """Whether `folder` holds results of an earlier run (checkpoints or a finished result; with
    `owned`, anything but its fingerprint)."""
    if owned:
        return folder.is_dir() and any(p.name != FINGERPRINT for p in folder.iterdir())
    return any((folder / n).exists() for n in OUTPUTS[:2]) or any(folder.glob("size-*"))


def clear_outputs(folder: Path, owned: bool = False) -> None:
    """Delete what an earlier run wrote into `folder` (only prunekit's own names; with `owned`,
    everything in it)."""
    mine = [*(folder / n for n in OUTPUTS), *folder.glob("size-*")]
    for path in list(folder.iterdir()) if owned and folder.is_dir() else mine:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def bind(
    folder: Path,
    binding: dict[str, Any],
    *,
    resume: bool = True,
    redo: bool = False,
    write: bool = True,
    owned: bool = False,
) -> dict[str, Any]:
    """Check `folder` against `binding` before resuming in it; record the binding.

    Args:
        folder: the run folder.
        binding: what the results depend on (JSON-able).
        resume: False starts over (earlier outputs are deleted).
        redo: on a mismatch, start over with a warning instead of failing.
        write: whether this process writes (the main rank under DDP).
        owned: the folder is prunekit's alone (a section's folder inside a run): starting over
            deletes everything in it.

    Returns:
        The fingerprint record as stored ({"binding", "steps_history"}).

    Raises:
        PrunekitError: (without `redo`) outputs of a run with other settings, or of a run
            that recorded none.
    """
    stored = read_fingerprint(folder)
    start_over = not resume
    if resume and has_outputs(folder, owned) and (stored or {}).get("binding") != binding:
        if stored is None:
            why = f"its results have no {FINGERPRINT} (an older prunekit wrote them)"
        else:
            why = f"it was made with other settings: {differences(stored['binding'], binding)}"
        if not redo:
            raise PrunekitError(
                f"{folder} holds another run ({why}): pass --out DIR for a new run, or "
                "--no-resume to replace it"
            )
        log.warning("%s: %s; starting it over", folder, why)
        start_over = True
    if start_over and write:
        clear_outputs(folder, owned)
    keep = stored and not start_over and stored.get("binding") == binding
    record = stored if keep else {"binding": binding, "steps_history": []}
    if write:
        write_json(folder / FINGERPRINT, record)
    return record


def record_steps(folder: Path, record: dict[str, Any], from_step: int, steps: int) -> None:
    """Note in the record that training runs from `from_step` towards `steps` steps (entries
    from later steps, which left no checkpoint, are dropped); written when it changes."""
    history = [h for h in record.get("steps_history", []) if h["from_step"] < from_step]
    if not history or history[-1]["steps"] != steps:
        history.append({"from_step": from_step, "steps": steps})
    if history != record.get("steps_history"):
        record["steps_history"] = history
        write_json(folder / FINGERPRINT, record)
