"""Recipe sections of the speech pipeline: the acoustic model (`am:`) and the recipe around it.

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

`train.batch_size` and `train.bptt` are LM settings; the acoustic model's batches are set by
`max_frames` and ignore them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prunekit.audio.specaugment import SpecAugment
from prunekit.config.recipe import PruneSection, TrainConfig, _describe, set_dotted
from prunekit.errors import PrunekitError
from prunekit.lowrank.config import LowRankSection

# About 1 h on 2 idle cores for the default 3 x 256 BiGRU on ~2 h of speech (estimated from 1-thread
# runs on a shared machine: ~1,900 frames/s; 1,200 steps x ~11,700 frames = ~18 epochs).
AM_TRAIN_DEFAULTS = TrainConfig(
    steps=1200, lr=2e-3, warmup_steps=150, eval_every=200, betas=(0.9, 0.98), grad_clip=5.0
)


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


class AsrRecipe(_Strict):
    """A speech recipe: the corpus (`speech:`, validated by the speech pipeline) and `am:`;
    `lowrank:` and `prune:` (schedule: narang) compress the acoustic model
    (`prunekit.pipelines.am_compress`)."""

    name: str = "asr"
    speech: dict[str, Any] = Field(default_factory=dict)
    am: AcousticSection = AcousticSection()
    lowrank: list[LowRankSection] = Field(default_factory=list)
    prune: list[PruneSection] = Field(default_factory=list)


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
    try:
        recipe = AsrRecipe.model_validate(data)
    except ValidationError as exc:
        raise PrunekitError(_describe(exc.errors()[0])) from None
    arch = recipe.am.model.get("arch", "ctc")
    if arch != "ctc":
        raise PrunekitError(f"recipe key 'am.model.arch' is {arch!r}: set it to 'ctc'")
    return recipe


def load_asr_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> AsrRecipe:
    """Read and validate a YAML speech recipe.

    Raises:
        PrunekitError: a missing file, bad YAML, an unknown key or a wrong value.
    """
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(f"recipe {path} does not exist: pass the path of a YAML recipe")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise PrunekitError(f"recipe {path} is not valid YAML ({first}): fix the file") from None
    if raw is not None and not isinstance(raw, dict):
        raise PrunekitError(f"recipe {path} must be a mapping of sections (name, speech, am)")
    return parse_asr_recipe(raw, overrides)
