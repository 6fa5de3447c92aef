"""Settings of `prunekit bench am-compress`: a speech recipe (its `lowrank:` and `prune:` sections
are the sweep and Narang's run) plus the bench's own `bench:` section.

    name: am_compress
    speech: {}                     # the corpus (SpeechConfig)
    am: {model: {...}, train: {...}, max_frames: 8000}     # the swept model and its training
    lowrank: [tracenorm grid, l2 grid, short variant]      # LowRankSection each
    prune: [{name: narang, schedule: narang, ...}]         # one narang section
    bench:
      train_utterances: null       # a subset of the training split (first N by utterance id)
      eval_splits: [test]          # greedy WER / CER of every row on these splits
      dense_widths: [64, 128, 256] # dense models (d_hidden = d_input = width)
      sparse_widths: [128, 256]    # Narang's ramp at these widths (q from the dense model)
      compare_width: 128           # the cubic schedule (magnitude, taylor) at this width
      structured: 0.5              # structured (gate-aware units) cubic run at that width
      frames_per_second: 18000     # cost model before a dense cell has run (1 thread)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prunekit.config.asr import AsrRecipe, parse_asr_recipe
from prunekit.config.recipe import _describe, set_dotted
from prunekit.errors import PrunekitError
from prunekit.recipes import builtin


class AmBenchSettings(BaseModel):
    """The `bench:` section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_utterances: int | None = Field(None, ge=2)
    eval_splits: list[str] = Field(default_factory=lambda: ["test"], min_length=1)
    dense_widths: list[int] = Field(default_factory=lambda: [64, 128, 256], min_length=1)
    sparse_widths: list[int] = Field(default_factory=lambda: [128, 256])
    compare_width: int = 128
    structured: float | None = Field(0.5, gt=0, lt=1)
    frames_per_second: float = Field(18_000.0, gt=0)

    @model_validator(mode="after")
    def _widths(self) -> AmBenchSettings:
        dense = set(self.dense_widths)
        missing = sorted(set(self.sparse_widths) - dense)
        if missing:
            raise ValueError(
                f"sparse_widths {missing} need dense models of the same width for q: add them to "
                "dense_widths"
            )
        if self.sparse_widths and self.compare_width not in self.sparse_widths:
            raise ValueError(f"compare_width {self.compare_width} must be one of sparse_widths")
        return self


class AmCompressSpec(AsrRecipe):
    """A speech recipe plus `bench:`; the recipe part runs through `pipelines.am_compress`."""

    bench: AmBenchSettings = AmBenchSettings()

    @model_validator(mode="after")
    def _sections(self) -> AmCompressSpec:
        narang = [s for s in self.prune if s.schedule == "narang"]
        if self.bench.sparse_widths and len(narang) != 1:
            raise ValueError("prune: needs exactly one `schedule: narang` section")
        names = [p.name for s in self.lowrank for p in s.grid()]
        if len(set(names)) != len(names):
            raise ValueError(f"lowrank: grid points need distinct names, got {names}")
        return self

    def recipe(self) -> AsrRecipe:
        """The speech recipe without `bench:`."""
        return AsrRecipe.model_validate(self.model_dump(exclude={"bench"}))

    def at_width(self, width: int) -> AsrRecipe:
        """The recipe with the acoustic model `width` wide (d_hidden = d_input = width)."""
        data = self.recipe().model_dump()
        data["am"]["model"] = {**data["am"]["model"], "d_hidden": width, "d_input": width}
        return AsrRecipe.model_validate(data)


def load_am_spec(path: str | Path | None, overrides: dict[str, Any] | None = None):
    """Read the bench settings (a YAML file, a built-in name, or None: `am_compress`).

    Raises:
        PrunekitError: a missing file, bad YAML, or the first unknown key / wrong value.
    """
    name = str(path or "am_compress")
    file = Path(name)
    if not file.is_file():
        file = builtin(name.removesuffix(".yaml"))
    if not file.is_file():
        raise PrunekitError(
            f"am-compress settings {name} do not exist: pass a YAML file or the built-in name "
            "am_compress"
        )
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PrunekitError(
            f"{file} is not valid YAML ({str(exc).splitlines()[0]}): fix it"
        ) from None
    return parse_am_spec(raw, overrides)


def parse_am_spec(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> AmCompressSpec:
    """Validate bench settings (plus dotted overrides such as {"bench.eval_splits": ["dev"]}).

    Raises:
        PrunekitError: the first unknown key or wrong value, naming it.
    """
    data = copy.deepcopy(dict(raw))
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    try:
        spec = AmCompressSpec.model_validate(data)
    except ValidationError as exc:
        raise PrunekitError(_describe(exc.errors()[0])) from None
    parse_asr_recipe(spec.recipe().model_dump(mode="json"))  # the recipe's own checks (arch)
    return spec
