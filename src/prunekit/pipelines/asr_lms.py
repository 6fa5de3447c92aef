"""The two LMs of the speech pipeline: the fused NNLM and the density-ratio source LM.

The fused LM is an ordinary LM recipe (`lm.recipe`, default `demo`) trained on the spoken form
of the speech corpus's text (`data.text: spoken`), or a given trained LM (`lm.checkpoint`). The
source LM (`source_lm`) estimates the acoustic model's internal LM (McDermott, Sak & Variani
2019): the same kind of recipe, trained on the acoustic model's training transcripts (valid and
test are the dev transcripts; the test transcripts are never read). Both train through
`train_baseline` (checkpoints, exact resume) and load through `prunekit.asr.load_lm`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prunekit.asr.load_lm import LoadedLM, load_lm
from prunekit.atomic import write_text
from prunekit.audio.featureset import FeatureSet
from prunekit.config.asr import AsrRecipe, LMSection, lm_recipe, text_corpus
from prunekit.config.recipe import RunConfig
from prunekit.data.tokenizers import SPM_DEFAULT_VOCAB
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import train_baseline

FREE_TRAIN_KEYS = ("threads", "log_every", "eval_batch_size", "checkpoint_every")
"""Train settings that do not change what a run computes (a finished run ignores them)."""


def fingerprint(obj: Any) -> str:
    """A short content hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def comparable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A dumped LM recipe without what does not change the trained LM: its name, its `prune`,
    `speech` and `speed` (a measurement) sections and FREE_TRAIN_KEYS; a sentencepiece
    `data.vocab_size` left at None reads as the default it stands for."""
    out = {k: v for k, v in recipe.items() if k not in ("name", "prune", "speech", "speed")}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k not in FREE_TRAIN_KEYS}
    data = out.get("data")
    if isinstance(data, dict) and data.get("tokenizer", "sentencepiece") == "sentencepiece":
        out["data"] = {**data, "vocab_size": data.get("vocab_size") or SPM_DEFAULT_VOCAB}
    return out


def fusion_lm_recipe(recipe: AsrRecipe) -> RunConfig:
    """The fused LM's recipe: `lm.recipe` with its sections, on the spoken form of the corpus."""
    return lm_recipe(recipe.lm, f"{recipe.name}-lm", corpus=text_corpus(recipe), text="spoken")


def source_lm_recipe(section: LMSection, transcripts: Path, name: str) -> RunConfig:
    """The source LM's recipe: `section` on the transcripts folder (already in spoken form)."""
    return lm_recipe(section, f"{name}-source-lm", "source_lm", corpus=str(transcripts), text="raw")


def write_transcripts(feats: dict[str, FeatureSet], folder: Path) -> Path:
    """train.txt = training transcripts; valid.txt = test.txt = dev transcripts (one per line)."""
    lines = {"train": feats["train"].texts, "valid": feats["dev"].texts}
    lines["test"] = lines["valid"]
    for split, texts in lines.items():
        body = "\n".join(t for t in texts if t.strip()) + "\n"
        path = folder / f"{split}.txt"
        if not path.is_file() or path.read_text(encoding="utf-8") != body:
            write_text(path, body)
    return folder


def _recorded_recipe(out_dir: Path) -> dict[str, Any] | None:
    """The recipe a run folder was trained with (finished: metrics.json; partial: last checkpoint)."""
    for path, keys in (
        (out_dir / "metrics.json", ("recipe",)),
        (out_dir / "checkpoints" / "last" / "state.json", ("state", "run", "recipe")),
    ):
        if path.is_file():
            node: Any = json.loads(path.read_text(encoding="utf-8"))
            for key in keys:
                node = (node or {}).get(key)
            return node
    return None


def check_same_recipe(out_dir: Path, cfg: RunConfig, what: str) -> None:
    """Refuse to continue a run folder trained with other settings.

    Raises:
        PrunekitError: naming the folder and the fix.
    """
    before = _recorded_recipe(out_dir)
    if before is not None and comparable(before) != comparable(cfg.model_dump(mode="json")):
        raise PrunekitError(
            f"{out_dir} holds a {what} trained with other settings: pass another --out, or "
            "--no-resume to train it again"
        )


def train_lm(cfg: RunConfig, out_dir: Path, what: str, *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or reuse when finished) the LM of `cfg` in `out_dir`; its metrics."""
    check_same_recipe(out_dir, cfg, what)
    done = out_dir / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    return train_baseline(cfg, out_dir, progress=progress)


def given_lm(section: LMSection, what: str) -> tuple[LoadedLM, dict[str, Any]]:
    """The LM `section.checkpoint` names, and what is known about it."""
    loaded = load_lm(section.checkpoint or "", section.tokenizer)
    params = sum(p.numel() for p in loaded.model.parameters())
    return loaded, {"given": str(loaded.path), "kind": loaded.kind, "params": params, "what": what}


def fusion_lm(recipe: AsrRecipe, out: Path, *, progress: bool = True) -> tuple[LoadedLM, dict]:
    """The fused LM: given (`lm.checkpoint`), or trained in out/lm. (LM, its metrics)."""
    if recipe.lm.checkpoint:
        return given_lm(recipe.lm, "fused LM")
    metrics = train_lm(fusion_lm_recipe(recipe), out / "lm", "fused LM", progress=progress)
    return load_lm(out / "lm" / "checkpoints" / "best"), metrics


def source_lm(
    recipe: AsrRecipe, feats: dict[str, FeatureSet], out: Path, *, progress: bool = True
) -> tuple[LoadedLM | None, dict]:
    """The density-ratio source LM (None when `source_lm: null`), trained in out/source_lm."""
    section = recipe.source_lm
    if section is None:
        return None, {}
    if section.checkpoint:
        return given_lm(section, "source LM")
    folder = out / "source_lm"
    cfg = source_lm_recipe(section, write_transcripts(feats, folder / "text"), recipe.name)
    metrics = train_lm(cfg, folder, "source LM", progress=progress)
    return load_lm(folder / "checkpoints" / "best"), metrics


def lm_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of an LM's metrics a report shows."""
    keys = ("params", "valid_ppl", "test_ppl", "valid_word_ppl", "test_word_ppl", "steps",
            "train_seconds", "vocab_size", "given", "kind")  # fmt: skip
    out = {k: metrics[k] for k in keys if k in metrics}
    recipe = metrics.get("recipe") or {}
    if recipe:
        out["model"] = recipe.get("model")
        out["data"] = recipe.get("data")
    return out
