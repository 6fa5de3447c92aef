"""A recipe's `schedule: narang` prune sections on its language model (`prunekit run`).

Narang et al. prune during the first training: the section trains the recipe's model from scratch
(`train.steps`, the baseline's settings) while the threshold ramp prunes it, with q taken per
layer type from the trained dense baseline (or `narang.q_from`, or given as `narang.q`). With
`narang.compare`, the same model is also trained with the cubic schedule to the sparsity Narang
reached, over the same window, once per listed criterion (e.g. magnitude and taylor).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.config import PruneSection, RunConfig
from prunekit.config.asr import AcousticSection
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import LMData, build_lm, lm_task, prepare_data
from prunekit.pipelines.lm_compress import load_trained, measure
from prunekit.pipelines.prune_train import narang_compare, train_pruned
from prunekit.prune import PruneConfig, Pruner, ScopeConfig
from prunekit.prune.narang import narang_q, paper_ramp


def narang_config(
    cfg: RunConfig | AcousticSection, section: PruneSection, epoch_steps: int,
    q: dict[str, float] | None,
) -> PruneConfig:  # fmt: skip
    """The PruneConfig of a narang section over `cfg.train.steps` (validates it); `cfg` is a
    recipe, or a speech recipe's `am:` section."""
    n = section.narang
    ramp = paper_ramp(
        cfg.train.steps, epoch_steps, start=n.start, ramp=n.ramp, end=n.end, freq=n.freq,
        slope_mult=n.slope_mult, q_percentile=n.q_percentile, q=q,
    )  # fmt: skip
    return PruneConfig(
        criterion=section.criterion, method=section.method, method_args=section.method_args,
        schedule=ramp, scope=ScopeConfig(**section.scope), budget=section.budget,
    )  # fmt: skip


def section_q(section: PruneSection, baseline: Path) -> dict[str, float]:
    """`narang.q`, else q per layer type (or tensor) of the dense checkpoint `q_from`/`baseline`."""
    n = section.narang
    if n.q is not None:
        return dict(n.q)
    dense = load_trained(Path(n.q_from) if n.q_from else baseline)
    return narang_q(dense, ScopeConfig(**section.scope), percentile=n.q_percentile, per=n.q_per)


def _row(result: dict[str, Any], variant: str) -> dict[str, Any]:
    keep = {k: v for k, v in result.items() if k not in ("history", "per_tensor")}
    return {**keep, "variant": variant, "target_params": result["effective_params"]}


def narang_rows(
    cfg: RunConfig, section: PruneSection, baseline: Path, data: LMData, out: Path
) -> list[dict[str, Any]]:
    """Run a narang section (and its cubic comparisons) into `out`; one row per run."""
    task = lm_task(data, cfg)
    pcfg = narang_config(cfg, section, len(task), section_q(section, baseline))

    def build() -> nn.Module:
        return build_lm(cfg, data.tokenizer.vocab_size)

    kw: dict[str, Any] = {
        "evaluate": lambda m: measure(m, data, cfg),
        "run_state": {"recipe": cfg.model_dump(mode="json")},
    }
    result = train_pruned(build(), task, cfg.train, pcfg, out / "narang", **kw)
    rows = [_row(result, section.name)]
    compared = narang_compare(
        build, task, cfg.train, pcfg, result["sparsity"], section.narang.compare, out / "cubic",
        **kw,
    )  # fmt: skip
    rows += [_row(r, f"{section.name}-cubic-{c}") for c, r in compared.items()]
    return rows


def narang_section(cfg: RunConfig, name: str) -> PruneSection:
    """The recipe's `schedule: narang` prune section called `name`.

    Raises:
        PrunekitError: no such section.
    """
    found = [s for s in cfg.prune if s.name == name and s.schedule == "narang"]
    if not found:
        names = [s.name for s in cfg.prune if s.schedule == "narang"]
        raise PrunekitError(
            f"the recipe has no `schedule: narang` prune section named {name!r} (it has "
            f"{names}): add one or pass its name"
        )
    return found[0]


def train_narang(cfg: RunConfig, section: PruneSection, out: Path) -> dict[str, Any]:
    """`prunekit train --prune NAME`: train the recipe's LM from scratch under a narang section
    (q from `narang.q` or `narang.q_from`: there is no baseline here); returns the metrics.

    Raises:
        PrunekitError: a section with neither q nor q_from.
    """
    n = section.narang
    if n.q is None and n.q_from is None:
        raise PrunekitError(
            f"prune section {section.name!r} needs narang.q or narang.q_from (a trained dense "
            "checkpoint) under `prunekit train`: set one, or use `prunekit run`, which trains "
            "the dense baseline first"
        )
    torch.set_num_threads(cfg.train.threads)
    data = prepare_data(cfg)
    q = dict(n.q) if n.q is not None else section_q(section, Path(str(n.q_from)))
    task = lm_task(data, cfg)
    pcfg = narang_config(cfg, section, len(task), q)
    model = build_lm(cfg, data.tokenizer.vocab_size)
    kw = {"evaluate": lambda m: measure(m, data, cfg),
          "run_state": {"recipe": cfg.model_dump(mode="json")}}  # fmt: skip
    result = train_pruned(model, task, cfg.train, pcfg, out, **kw)
    data.tokenizer.save(out / "tokenizer.model")
    return result


def check_narang(cfg: RunConfig, model: nn.Module, epoch_steps: int = 1) -> None:
    """Validate every narang section against an untrained `model` before any training.

    Raises:
        PrunekitError: bad iterations, q entries or scope (the first problem found).
    """
    for section in cfg.prune:
        if section.schedule == "narang":
            pcfg = narang_config(cfg, section, epoch_steps, section.narang.q)
            Pruner(copy.deepcopy(model), pcfg).attach()  # scope, q coverage, method checks
