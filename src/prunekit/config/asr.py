"""Recipe of the speech pipeline (`prunekit asr`): corpus, acoustic model, LMs and decoding.

    name: asr_demo
    speech: {...}          # the speech corpus (prunekit.audio's SpeechConfig)
    am:
      model: {arch: ctc, d_hidden: 256, n_layer: 3, ...}   # prunekit.models.AcousticConfig
      train: {steps: ..., lr: ...}                          # the LM's TrainConfig, reused
      max_frames: 12000                                     # frame budget per batch
      min_batch: 2                                          # >= the number of DDP processes
      specaugment: {freq_masks: 2, ...}                     # or null: no augmentation
    lowrank: [...]         # seed 000 on the acoustic model (prunekit.lowrank's LowRankSection)
    prune: [...]           # `schedule: narang` sections: seed 001 during the first training
    lm:                    # the fused NNLM: an LM recipe trained on the spoken form of the text
      recipe: demo         # built-in name or YAML path; data/model/train here are merged over it
      checkpoint: null     # or a trained LM (checkpoint, pruned checkpoint, export folder)
    source_lm: {...}       # the density-ratio source LM (same fields; its text is the acoustic
                           # model's training transcripts); null: no internal-LM subtraction
    decode: {beam_width: 16, lm_weight: [...], ilm_weight: [...], word_bonus: [...], ...}

`am.train.batch_size` and `am.train.bptt` are LM settings; the acoustic model's batches are set
by `max_frames` and ignore them. The speech corpus's text (`speech.corpus`) and the fused LM's
corpus follow each other: set one of them (default: the LM recipe's corpus, Shakespeare).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prunekit.audio.specaugment import SpecAugment
from prunekit.audio.speech_config import SpeechConfig
from prunekit.config.recipe import (
    PruneSection,
    RunConfig,
    TrainConfig,
    _describe,
    parse_recipe,
    read_recipe_yaml,
    set_dotted,
)
from prunekit.errors import PrunekitError
from prunekit.lowrank.config import LowRankSection
from prunekit.recipes import builtin

# 3,000 steps of ~11,600 frames: ~21 epochs of the default 4.6 h training set. Measured on the
# shared dev box at 1 thread: 8,900 frames per CPU second (3 x 256 BiGRU, forward + backward),
# so ~65 min on one idle core and ~45-50 min on two (assumed 1.3-1.5x from the second thread).
AM_TRAIN_DEFAULTS = TrainConfig(
    steps=3000, lr=2e-3, warmup_steps=150, eval_every=250, betas=(0.9, 0.98), grad_clip=5.0,
    checkpoint_every=50,
)  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcousticSection(_Strict):
    """How to build and train the CTC acoustic model."""

    model: dict[str, Any] = Field(default_factory=lambda: {"arch": "ctc"})
    train: TrainConfig = AM_TRAIN_DEFAULTS
    max_frames: int = Field(12_000, ge=1)  # padded input frames (10 ms) per global batch
    min_batch: int = Field(2, ge=1)  # utterances per batch at least (one per DDP process)
    eval_max_frames: int = Field(24_000, ge=1)  # per validation / decoding batch
    specaugment: SpecAugment | None = SpecAugment()
    sortagrad: bool = False  # first epoch shortest batches first (Deep Speech 2's curriculum)


class LMSection(_Strict):
    """A language model for decoding: trained from an LM recipe, or a given trained one.

    Attributes:
        recipe: an LM recipe, built-in name (demo, paper, ...) or YAML path.
        data, model, train: recipe sections merged over the recipe's own (e.g. train: {steps: 600}).
        checkpoint: a trained LM to use instead of training one: a checkpoint folder (dense or
            pruned) or an export folder (`prunekit export`).
        tokenizer: its tokenizer file, when it is not found beside the checkpoint.
    """

    recipe: str = "demo"
    data: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None
    tokenizer: str | None = None


def _source_lm_default() -> LMSection:
    """The demo Transformer on ~40k words of transcripts: a 500-unit vocabulary, short training."""
    return LMSection(
        data={"vocab_size": 500},
        train={"steps": 400, "eval_every": 50, "warmup_steps": 40},
    )


class DecodeSection(_Strict):
    """CTC prefix beam search with shallow fusion, and the dev grid its weights are tuned on.

    `search: coordinate` tunes one weight at a time over its values (the others held), in rounds
    until nothing changes, starting from the middle of each list: far fewer dev decodes than the
    full `grid` (every lambda x mu x beta with mu <= lambda).
    """

    beam_width: int = Field(16, ge=1)
    token_min_logp: float = Field(-5.0, lt=0)
    beam_prune_logp: float = Field(-10.0, lt=0)
    lm_weight: list[float] = Field(default_factory=lambda: [0.3, 0.5, 0.8, 1.2], min_length=1)
    ilm_weight: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4], min_length=1)
    word_bonus: list[float] = Field(default_factory=lambda: [0.0, 1.0, 2.0, 3.0], min_length=1)
    search: Literal["grid", "coordinate"] = "coordinate"
    tune_utterances: int = Field(0, ge=0)  # dev utterances to tune on (0 = all)
    threads: int = Field(1, ge=1)  # decoding threads (1: the real-time factor is per core)


class AsrRecipe(_Strict):
    """A speech recipe: corpus, acoustic model, fused LM, source LM and decoding; `lowrank:` and
    `prune:` (schedule: narang) compress the acoustic model (`prunekit.pipelines.am_compress`)."""

    name: str = "asr"
    speech: SpeechConfig = SpeechConfig()
    am: AcousticSection = AcousticSection()
    lowrank: list[LowRankSection] = Field(default_factory=list)
    prune: list[PruneSection] = Field(default_factory=list)
    lm: LMSection = LMSection()
    source_lm: LMSection | None = Field(default_factory=_source_lm_default)
    decode: DecodeSection = DecodeSection()


def parse_asr_recipe(
    raw: dict[str, Any] | None, overrides: dict[str, Any] | None = None
) -> AsrRecipe:
    """Validate a speech recipe dict (plus dotted overrides such as {"am.train.steps": 10}).

    Raises:
        PrunekitError: the first unknown key or wrong value, naming the key.
    """
    data: dict[str, Any] = copy.deepcopy(dict(raw or {}))
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    arch = ((data.get("am") or {}).get("model") or {}).get("arch", "ctc")
    if arch != "ctc":
        raise PrunekitError(f"recipe key 'am.model.arch' is {arch!r}: set it to 'ctc'")
    try:
        return AsrRecipe.model_validate(data)
    except ValidationError as exc:
        raise PrunekitError(_describe(exc.errors()[0])) from None


def resolve_recipe(recipe: str | Path | None, default: str = "asr_demo") -> Path:
    """A recipe file, or the name of a built-in one; None = `default`.

    Raises:
        PrunekitError: neither a file nor a built-in recipe.
    """
    name = str(recipe) if recipe is not None else default
    path = Path(name)
    if path.is_file():
        return path
    if "/" not in name and builtin(name).is_file():
        return builtin(name)
    raise PrunekitError(
        f"recipe {name} does not exist: pass a YAML file or a built-in name (e.g. {default})"
    )


def load_asr_recipe(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> AsrRecipe:
    """Read and validate a YAML speech recipe (a path or built-in name; None = asr_demo).

    Raises:
        PrunekitError: a missing file, bad YAML, an unknown key or a wrong value.
    """
    raw = read_recipe_yaml(
        resolve_recipe(path), "name, speech, am, lm, source_lm, decode, lowrank, prune"
    )
    return parse_asr_recipe(raw, overrides)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged in, nested mappings key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def lm_recipe(section: LMSection, name: str, where: str = "lm", **data: Any) -> RunConfig:
    """The LM recipe of `section`: its base recipe, its sections merged in, then `data` (e.g.
    corpus=..., text="spoken") set in `data:`; `prune:` sections are dropped. `where` names the
    section in errors.

    Raises:
        PrunekitError: a missing base recipe or an invalid merged one (naming the key).
    """
    raw = read_recipe_yaml(resolve_recipe(section.recipe, default="demo"))
    raw.pop("prune", None)
    raw.pop("speech", None)
    raw.pop("paper", None)
    for key in ("data", "model", "train"):
        raw[key] = _merge(raw.get(key) or {}, getattr(section, key))
    raw["data"].update(data)
    raw["name"] = name
    try:
        return parse_recipe(raw)
    except PrunekitError as exc:
        raise PrunekitError(f"{where} ({section.recipe}): {exc}") from None


def text_corpus(recipe: AsrRecipe) -> str:
    """The text corpus of the speech corpus and of the fused LM (see the module docstring)."""
    if recipe.speech.corpus:
        return recipe.speech.corpus
    if "corpus" in recipe.lm.data:
        return str(recipe.lm.data["corpus"])
    base = read_recipe_yaml(resolve_recipe(recipe.lm.recipe, default="demo"))
    return str((base.get("data") or {}).get("corpus") or "shakespeare")
