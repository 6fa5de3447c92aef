"""The `paper:` section of a paper-benchmark recipe (seed 004's Tables 1-3, Fig. 2, Fig. 3).

A paper recipe is an ordinary prunekit recipe (data, model, train: the baseline) plus a `paper:`
mapping that says which cells the grid holds and how long each runs. `--set paper.x.y=v` overrides
go to this section, every other key to the ordinary recipe.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prunekit.config import RunConfig, parse_recipe
from prunekit.config.recipe import set_dotted
from prunekit.errors import PrunekitError
from prunekit.recipes import resolve_recipe

FIG3_GROUPS: dict[str, list[str]] = {
    "embedding": ["embed.weight"],
    "attention": ["blocks.*.attn.*_proj.weight"],
    "ffn": ["blocks.*.ffn.*.weight"],
    "output": ["lm_head.weight"],
}


def fractions(value: list[float]) -> list[float]:
    """`value` when every size is a fraction of the baseline in (0, 1).

    Raises:
        ValueError: the first size out of range.
    """
    for s in value:
        if not 0 < s < 1:
            raise ValueError(f"size {s} must be a fraction of the baseline in (0, 1)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PruneDefaults(_Strict):
    """Settings shared by every pruning cell (see `prunekit.config.PruneSection`)."""

    steps: int = Field(400, ge=1)  # optimizer steps per pruning run (pruning + recovery)
    ramp: float = Field(0.75, gt=0, le=1)  # incremental: share of `steps` spent pruning
    frequency: int = Field(10, ge=1)  # incremental: prune every N steps
    lr: float = Field(1e-3, gt=0)
    calibration_batches: int = Field(8, ge=1)  # one-shot data-driven scores
    budget: Literal["layer", "global"] = "layer"
    scope: dict[str, Any] = Field(default_factory=dict)


class Fig2Config(_Strict):
    """Fig. 2: fine-tune the one-shot and incremental models for `epochs` more epochs (cosine
    decay of the learning rate over them), then `extra_epochs` more at a constant `extra_lr`.

    `extra_epochs` extends a finished grid: its Fig. 2 cells resume from their last checkpoint (a
    fresh run takes the same path, so both give the same curve). It is the one Fig. 2 setting a
    grid folder may change between invocations.
    """

    enabled: bool = True
    epochs: int = Field(3, ge=1)
    epoch_steps: int = Field(0, ge=0)  # steps per epoch; 0 = one pass over the training data
    evals_per_epoch: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0)  # None = prune.lr
    extra_epochs: int = Field(0, ge=0)  # constant-LR epochs after the cosine ones
    extra_lr: float | None = Field(None, gt=0)  # None = where the cosine ended (lr x min_lr_ratio)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.extra_epochs


class Fig3Config(_Strict):
    """Fig. 3: prune one layer group at a time to `sparsity` (magnitude, unstructured, incr.)."""

    enabled: bool = True
    sparsity: float = Field(0.75, gt=0, lt=1)
    groups: dict[str, list[str]] = Field(default_factory=lambda: dict(FIG3_GROUPS))
    steps: int | None = Field(None, ge=1)  # None = prune.steps
    evals: int = Field(10, ge=1)  # validation points over the run (plus step 0)
    criterion: str = "magnitude"


class LatencyConfig(_Strict):
    """Batch-1 decoding latency of each compact model (`--latency`)."""

    context: int = Field(32, ge=0)
    steps: int = Field(32, ge=1)
    repeats: int = Field(10, ge=1)
    threads: int = Field(1, ge=1)
    # time each cell as soon as it finishes: its checkpoints need not outlive the sitting
    each_cell: bool = True


class CostConfig(_Strict):
    """Cost model of `--dry-run`: seconds per training token = (a + b * Mparams) / 1000.

    Defaults measured on the 2-core AMD EPYC dev box (2 threads, batch 16 x 64): a 4.2M-param
    Transformer (vocab 4000) trains at 0.364 ms/token, a 0.8M one at 0.145 ms/token.
    """

    ms_per_token: float = Field(0.093, ge=0)  # a
    ms_per_token_per_mparam: float = Field(0.0644, ge=0)  # b
    prune_factor: float = Field(1.15, ge=1)  # masks, score accumulation
    factorized_factor: float = Field(1.5, ge=1)
    eval_factor: float = Field(0.33, gt=0)  # a forward-only token vs a training token
    cell_overhead_s: float = Field(10.0, ge=0)  # loading data and checkpoints, per cell


class BudgetConfig(_Strict):
    """The pruning-budget axis: incremental pruning runs of `steps` optimizer steps (the same
    `prune.ramp` share spent pruning) at `sizes`, each beside a from-scratch model of that size
    trained for as many steps as the baseline and the pruning run together (compute-matched in
    steps; `--dry-run` and the report give the CPU time)."""

    enabled: bool = False
    steps: list[int] = Field(default_factory=lambda: [500, 1000, 2000, 4000], min_length=1)
    sizes: list[float] = Field(default_factory=lambda: [0.1, 0.05], min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["unstructured", "factorized"], min_length=1)
    criterion: str | None = None  # None = t3_criterion
    scratch: bool = True  # the compute-matched from-scratch cells

    @field_validator("steps")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError(f"pruning steps {value} must all be >= 1")
        return sorted(set(value))

    @field_validator("sizes")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        return fractions(value)


class PaperConfig(_Strict):
    """Which cells the grid holds (seed 004's layout) and how long each runs."""

    sizes: list[float] = Field(default_factory=lambda: [0.5, 0.25, 0.1, 0.05], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    seeded_sizes: list[float] = Field(default_factory=lambda: [0.1])
    t1_criterion: str = "magnitude"  # Table 1 and Fig. 2
    criteria: list[str] = Field(default_factory=lambda: ["magnitude", "taylor"], min_length=2)
    extra_criteria: list[str] = Field(default_factory=lambda: ["activation"])
    t3_criterion: str = "taylor"
    methods: list[str] = Field(
        default_factory=lambda: ["unstructured", "structured", "factorized"], min_length=1
    )
    # Steps of fine-tuning after one-shot pruning. 0 = training-free, as seed 004's Table 1 reads
    # ("one-shot pruning can be an efficient training-free alternative"; Fig. 2 then fine-tunes
    # both); set it to prune.steps to give one-shot the incremental run's training budget.
    oneshot_steps: int = Field(0, ge=0)
    # Table 1 the paper's way too: one-shot followed by prune.steps of training (as many as the
    # incremental run), beside the training-free column (only while oneshot_steps is 0)
    t1_finetuned: bool = False
    scratch: bool = True  # Table 3's from-scratch row
    scratch_steps: int | None = Field(None, ge=1)  # None = train.steps
    checkpoint_every: int = Field(50, ge=1)  # every cell checkpoints this often (resume)
    prune: PruneDefaults = PruneDefaults()
    fig2: Fig2Config = Fig2Config()
    fig3: Fig3Config = Fig3Config()
    budget: BudgetConfig = BudgetConfig()
    latency: LatencyConfig = LatencyConfig()
    cost: CostConfig = CostConfig()

    @field_validator("sizes", "seeded_sizes")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        return fractions(value)


def size_label(size: float) -> str:
    """'s10' for 0.1, 's2.5' for 0.025: the size part of a cell id."""
    return f"s{round(100 * size, 4):g}"


def parse_paper(raw: dict[str, Any] | None, overrides: dict[str, Any] | None = None) -> PaperConfig:
    """Validate a `paper:` mapping (plus `paper.`-less dotted overrides) into a PaperConfig.

    Raises:
        PrunekitError: an unknown key or a wrong value, naming the key.
    """
    data = copy.deepcopy(dict(raw or {}))
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    try:
        return PaperConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = "paper." + ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise PrunekitError(f"recipe key '{key}' is not known: remove it or fix it") from None
        raise PrunekitError(f"recipe key '{key}': {err['msg']}: fix the value") from None


def resolve_recipe_path(recipe: str | None) -> Path:
    """A recipe file, or the name of a built-in one ('paper', 'paper_tiny'); default 'paper'.

    Raises:
        PrunekitError: neither a file nor a built-in recipe.
    """
    return resolve_recipe(recipe, "paper")


def load_paper_recipe(
    recipe: str | None, overrides: dict[str, Any] | None = None
) -> tuple[RunConfig, PaperConfig]:
    """Read a paper recipe (file or built-in name) and apply dotted overrides.

    Returns:
        (the baseline recipe, the grid settings).

    Raises:
        PrunekitError: missing file, bad YAML, a `prune:` section, unknown keys or bad values.
    """
    path = resolve_recipe_path(recipe)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise PrunekitError(f"recipe {path} is not valid YAML ({first}): fix the file") from None
    if not isinstance(raw, dict):
        raise PrunekitError(f"recipe {path} must be a mapping of sections (data, model, ...)")
    if raw.get("prune"):
        raise PrunekitError(
            f"recipe {path} has a `prune:` list: the paper grid builds its own cells, "
            "configure them under `paper:` instead"
        )
    paper_raw = raw.pop("paper", None) or {}
    raw.pop("prune", None)
    paper_over = {
        k[len("paper.") :]: v for k, v in (overrides or {}).items() if k.startswith("paper.")
    }
    run_over = {k: v for k, v in (overrides or {}).items() if not k.startswith("paper.")}
    return parse_recipe(raw, run_over), parse_paper(paper_raw, paper_over)
