"""Typed, validated recipes (pydantic): an unknown key or a wrong type is an error that names the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from prunekit.audio.speech_config import SpeechConfig
from prunekit.config.narang import NarangSection
from prunekit.errors import PrunekitError
from prunekit.lowrank.config import LowRankSection


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the text comes from and how it becomes token ids."""

    corpus: str = "shakespeare"  # or "web-bible", a folder (train/valid/test), a .txt file
    tokenizer: Literal["sentencepiece", "word"] = "sentencepiece"
    # sentencepiece: pieces (None = 2000); word: a cap on the vocabulary (None or 0 = every word
    # of the train split; a cap maps rarer words to <unk>, and reports give the OOV rate)
    vocab_size: int | None = Field(None, ge=0)
    spm_model_type: Literal["unigram", "bpe"] = "unigram"
    text: Literal["raw", "spoken"] = "raw"  # spoken: as a recognizer emits it (for fusion LMs)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        """Leave `text` out while it is "raw", so recipes dumped before it existed compare equal."""
        out = handler(self)
        if self.text == "raw":
            out.pop("text", None)
        return out


class TrainConfig(_Strict):
    """Optimisation: AdamW with linear warmup and cosine/linear decay, clipping, periodic validation."""

    steps: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1)  # global batch (split across DDP ranks)
    bptt: int = Field(64, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = Field(50, ge=0)
    decay: Literal["cosine", "linear", "constant", "step"] = "cosine"  # step: see train.lr
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0)  # 0 = off
    eval_every: int = Field(200, ge=1)
    checkpoint_every: int = Field(
        0, ge=0
    )  # also save checkpoints/last every N steps (0 = only at evals)
    eval_batch_size: int = Field(16, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = Field(0, ge=0, lt=2**32)  # torch, numpy, random, dropout and data order
    threads: int = Field(2, ge=1)
    shuffle: bool = True


class PruneSection(_Strict):
    """One way to compress the trained baseline, to one or more target sizes.

    `sizes` are fractions of the baseline's parameter count (<= 1) or absolute counts (> 1).
    Incremental: one run follows the cubic schedule (eq. 4) to the smallest size over `ramp` of
    `steps`, pruning every `frequency` steps; the schedule stops exactly at each larger size on
    its way (one update lands on it), the model is checkpointed there and then fine-tuned, with
    its masks fixed, for as many steps as the smallest size gets after the last update
    (`steps` - last update step - 1). `steps` must leave room for at least one update after
    step 0. One-shot: one run per size, pruned at step 0 (data-driven scores from
    `calibration_batches` batches) and then fine-tuned for `steps`. Narang: the model is trained
    from scratch while Narang's threshold ramp prunes it (`narang:` settings,
    `prunekit.config.narang`).
    """

    name: str
    criterion: str = "taylor"
    method: str = "unstructured"
    method_args: dict[str, Any] = Field(default_factory=dict)
    schedule: Literal["incremental", "one-shot", "narang"] = "incremental"
    narang: NarangSection = NarangSection()
    sizes: list[float] = Field(default_factory=lambda: [0.5, 0.25, 0.1], min_length=1)
    steps: int = Field(400, ge=1)
    ramp: float = Field(0.75, gt=0, le=1)
    frequency: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    calibration_batches: int = Field(8, ge=1)
    scope: dict[str, Any] = Field(default_factory=dict)
    budget: Literal["layer", "global"] = "layer"


class SpeedConfig(_Strict):
    """The main job's decode-speed measurement of each compressed model (`pipelines.lm_speed`).

    Batch-1 incremental decoding of the compact export (`export.compact` + `runtime.fast_decoder`)
    against the fastest dense path, variants interleaved (`bench.latency.compare_variants`).
    """

    enabled: bool = True
    threads: int = Field(1, ge=1)
    context: int = Field(32, ge=0)  # tokens fed (untimed) before the timed steps
    steps: int = Field(16, ge=1)  # timed one-token steps per repetition
    repeats: int = Field(15, ge=1)


class RunConfig(_Strict):
    """A whole recipe: data, model, training, and the compressions to run on the trained model."""

    name: str = "run"
    data: DataConfig = DataConfig()
    model: dict[str, Any] = Field(default_factory=lambda: {"arch": "transformer"})
    train: TrainConfig = TrainConfig()
    prune: list[PruneSection] = Field(default_factory=list)
    speech: SpeechConfig = SpeechConfig()
    lowrank: list[LowRankSection] = Field(default_factory=list)  # seed 000, prunekit.lowrank
    speed: SpeedConfig = SpeedConfig()


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"recipe key '{key}' is not known: remove it or fix its spelling"
    return f"recipe key '{key}': {err['msg']} (got {err.get('input')!r}): fix the value"


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set data["a"]["b"][0]["c"] = value for dotted="a.b.0.c" (sections are created as needed).

    Raises:
        PrunekitError: a path step that is neither a section nor an existing list index.
    """
    node: Any = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise PrunekitError(f"override '{dotted}': '{part}' is not a section or list index")
    if isinstance(node, list) and leaf.isdigit() and int(leaf) < len(node):
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise PrunekitError(f"override '{dotted}': '{leaf}' is not a key or list index")


def parse_recipe(raw: dict[str, Any] | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Validate a recipe dict (plus dotted `overrides` like {"train.steps": 10}) into a RunConfig.

    Raises:
        PrunekitError: on the first unknown key or wrong type, naming the key.
    """
    data: dict[str, Any] = copy.deepcopy(dict(raw or {}))
    if any(key.startswith("prune.") for key in overrides or {}) and "prune" not in data:
        data["prune"] = RunConfig().model_dump(mode="json")["prune"]
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise PrunekitError(_describe(exc.errors()[0])) from None


def read_recipe_yaml(path: str | Path, sections: str = "data, model, train") -> dict[str, Any]:
    """The raw mapping of a YAML recipe file (not validated; empty file: {}); `sections` names them
    in errors.

    Raises:
        PrunekitError: missing file, bad YAML, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(f"recipe {path} does not exist: pass the path of a YAML recipe")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PrunekitError(f"recipe {path} is not valid YAML ({first}): fix the file") from None
    if raw is not None and not isinstance(raw, dict):
        raise PrunekitError(f"recipe {path} must be a mapping of sections ({sections})")
    return dict(raw or {})


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML recipe (None = the built-in defaults) and validate it.

    Raises:
        PrunekitError: missing file, bad YAML, unknown key or wrong type.
    """
    if path is None:
        return parse_recipe({}, overrides)
    return parse_recipe(read_recipe_yaml(path), overrides)
