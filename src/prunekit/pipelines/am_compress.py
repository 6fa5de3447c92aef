"""A speech recipe's `lowrank:` and `prune:` (schedule: narang) sections on its CTC acoustic model.

    feats = speech_features(with_text_corpus(recipe.speech, text_corpus(recipe)))
    rows = lowrank_am(recipe, recipe.lowrank[0], feats, "runs/am-tn")       # seed 000
    rows = narang_am(recipe, recipe.prune[0], feats, "runs/am-narang",      # seed 001
                     dense="runs/am/checkpoints/best")                      # q from a dense AM

Both are the generic pipelines (`pipelines.lowrank.run_lowrank`, `pipelines.prune_train.
train_pruned` / `narang_compare`) with the recipe's CTC model (feature statistics of the training
set stored in it) and `CTCTask`; every row gets greedy (no LM) WER / CER of the listed splits.
Every run resumes exactly from its checkpoints, and a finished run is read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.asr.ctc_task import CTCTask
from prunekit.audio.featureset import FeatureSet
from prunekit.config import PruneSection
from prunekit.config.asr import AcousticSection, AsrRecipe
from prunekit.errors import PrunekitError
from prunekit.lowrank.config import LowRankSection
from prunekit.pipelines.asr import build_acoustic_model, ctc_task, evaluate_acoustic_model
from prunekit.pipelines.lm_narang import narang_config, section_q
from prunekit.pipelines.lowrank import run_lowrank
from prunekit.pipelines.prune_train import narang_compare, train_pruned

Feats = dict[str, FeatureSet]
EVAL_SPLITS = ("test",)


def am_model(cfg: AcousticSection, task: CTCTask) -> nn.Module:
    """The recipe's untrained CTC model (seeded by train.seed) with the task's feature stats."""
    model = build_acoustic_model(cfg, task.train.feats.shape[1])
    model.set_feature_stats(task.mean, task.std)
    return model


def am_metrics(feats: Feats, cfg: AcousticSection, splits: Sequence[str] = EVAL_SPLITS):
    """model -> {"<split>_wer", "<split>_cer", "<split>_unseen_wer", ..., "greedy": {...}}:
    greedy WER / CER of each split (overall and on voices training never heard)."""
    missing = [s for s in splits if s not in feats]
    if missing:
        raise PrunekitError(f"no {missing} split in the speech features: evaluate on {list(feats)}")

    def metrics(model: nn.Module) -> dict[str, Any]:
        subset = {"train": feats["train"], **{s: feats[s] for s in splits}}
        greedy = evaluate_acoustic_model(model, subset, max_frames=cfg.eval_max_frames)
        return {**greedy_rates(greedy, splits), "greedy": greedy}

    return metrics


def greedy_rates(greedy: dict[str, Any], splits: Sequence[str]) -> dict[str, float | None]:
    """{"<split>_wer", "<split>_cer", "<split>_seen_wer", ..., "<split>_unseen_cer"} from
    `evaluate_acoustic_model`'s result."""
    out: dict[str, float | None] = {}
    for s in splits:
        for part, tag in (("all", ""), ("seen_voices", "_seen"), ("unseen_voices", "_unseen")):
            out[f"{s}{tag}_wer"] = greedy[s][part]["wer"]
            out[f"{s}{tag}_cer"] = greedy[s][part]["cer"]
    return out


def lowrank_am(
    recipe: AsrRecipe, section: LowRankSection, feats: Feats, out: str | Path, *,
    splits: Sequence[str] = EVAL_SPLITS, progress: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every grid point of `section` on the acoustic model, into out/<point name>/; the stage-2
    rows (one per threshold) with WER / CER, parameters and FLOPs of the factored model."""
    cfg = recipe.am
    torch.set_num_threads(cfg.train.threads)
    task = ctc_task(cfg, feats)
    rows = []
    for point in section.grid():
        result = run_lowrank(
            am_model(cfg, task), task, cfg.train, point, Path(out) / point.name,
            evaluate=am_metrics(feats, cfg, splits), progress=progress,
        )  # fmt: skip
        rows += [{**r, "section": section.name, "point": point.name} for r in result["rows"]]
    return rows


def narang_q_source(section: PruneSection, dense: str | Path | None) -> dict[str, float]:
    """q of a narang section: `narang.q`, else from `narang.q_from` or the `dense` checkpoint.

    Raises:
        PrunekitError: not a narang section, or no source of q.
    """
    if section.schedule != "narang":
        raise PrunekitError(
            f"prune section {section.name!r} has schedule {section.schedule!r}: the acoustic "
            "model is pruned during its first training only (set schedule: narang)"
        )
    n = section.narang
    if n.q is None and n.q_from is None and dense is None:
        raise PrunekitError(
            f"prune section {section.name!r} needs narang.q, narang.q_from or a trained dense "
            "acoustic model checkpoint to take q from: set one"
        )
    if n.q is not None:
        return dict(n.q)
    return section_q(section, Path(str(dense if n.q_from is None else n.q_from)))


def _row(result: dict[str, Any], variant: str) -> dict[str, Any]:
    keep = {k: v for k, v in result.items() if k not in ("history", "per_tensor")}
    return {**keep, "variant": variant}


def narang_am(
    recipe: AsrRecipe, section: PruneSection, feats: Feats, out: str | Path, *,
    dense: str | Path | None = None, splits: Sequence[str] = EVAL_SPLITS, progress: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """Train the acoustic model from scratch under Narang's ramp (q per layer type from `dense`,
    a trained dense checkpoint of the same architecture, unless the section gives q), into
    out/narang; then the cubic schedule to the sparsity reached, per `narang.compare`
    criterion, into out/cubic/<criterion>. One row per run."""
    cfg = recipe.am
    torch.set_num_threads(cfg.train.threads)
    task = ctc_task(cfg, feats)
    pcfg = narang_config(cfg, section, len(task), narang_q_source(section, dense))
    kw: dict[str, Any] = {
        "evaluate": am_metrics(feats, cfg, splits),
        "run_state": {"am": cfg.model_dump(mode="json")},
        "progress": progress,
    }
    out = Path(out)
    result = train_pruned(am_model(cfg, task), task, cfg.train, pcfg, out / "narang", **kw)
    rows = [_row(result, section.name)]
    compared = narang_compare(
        lambda: am_model(cfg, task), task, cfg.train, pcfg, result["sparsity"],
        section.narang.compare, out / "cubic", **kw,
    )  # fmt: skip
    rows += [_row(r, f"{section.name}-cubic-{c}") for c, r in compared.items()]
    return rows
