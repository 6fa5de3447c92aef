"""Tune the fusion weights lambda (LM), mu (internal LM) and beta (word bonus) on a dev set.

Seed 004 tunes the external and internal LM weights for each decoding experiment; here a small
grid: every point decodes the dev set, the lowest WER wins (ties: the earlier point). Utterances
are the outer loop, so all grid points of one utterance share the LMs' caches: the LMs score each
(history, word) once per utterance, whatever the number of points.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from prunekit.asr.beam_search import BeamConfig, CTCBeamSearch, FusionParams
from prunekit.asr.lm_scorer import WordLM
from prunekit.asr.units import CharUnits
from prunekit.errors import PrunekitError
from prunekit.eval.wer import word_error_rate


@dataclass(frozen=True, kw_only=True)
class FusionGrid:
    """The values tried for each weight; points with mu > lambda are skipped."""

    lm_weight: tuple[float, ...] = (0.3, 0.5, 0.8, 1.2)
    ilm_weight: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4)
    word_bonus: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)

    def __post_init__(self) -> None:
        for name in ("lm_weight", "ilm_weight", "word_bonus"):
            if not getattr(self, name):
                raise PrunekitError(f"fusion grid {name} is empty: give at least one value")

    def points(self, with_ilm: bool = True) -> list[FusionParams]:
        """Grid points in order; without an internal LM, mu is 0 only."""
        mus = self.ilm_weight if with_ilm else (0.0,)
        return [
            FusionParams(lm_weight=lam, ilm_weight=mu, word_bonus=beta)
            for lam, mu, beta in itertools.product(
                self.lm_weight, sorted(set(mus)), self.word_bonus
            )
            if mu <= lam
        ]

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class FusionTuning:
    """The best point, its dev WER, and every point's result (JSON-ready via `to_dict`)."""

    best: FusionParams
    best_wer: float
    grid: list[dict] = field(repr=False)

    def to_dict(self) -> dict:
        return {"best": self.best.to_dict(), "best_wer": self.best_wer, "grid": self.grid}


def decode_grid(
    log_probs: Sequence[Tensor | np.ndarray],
    points: Sequence[FusionParams],
    *,
    lm: WordLM | None = None,
    ilm: WordLM | None = None,
    config: BeamConfig | None = None,
    units: CharUnits | None = None,
    on_utterance: Callable[[], Any] | None = None,
) -> list[list[str]]:
    """Best texts per grid point (outer list) and utterance, LM caches shared across points;
    `on_utterance` is called after each utterance (all points)."""
    searches = [CTCBeamSearch(lm, ilm, p, config, units) for p in points]
    texts: list[list[str]] = [[] for _ in points]
    for lp in log_probs:
        for m in (lm, ilm):
            if m is not None:
                m.reset()
        for out, search in zip(texts, searches, strict=True):
            hyps = search.search(lp)
            out.append(hyps[0].text if hyps else "")
        if on_utterance is not None:
            on_utterance()
    return texts


def _check_references(log_probs: Sequence[Any], refs: Sequence[str]) -> None:
    """Raise unless there is one reference per dev utterance."""
    if len(log_probs) != len(refs):
        raise PrunekitError(
            f"got {len(log_probs)} utterances and {len(refs)} references: pass one reference "
            "per dev utterance"
        )


def _score(point: FusionParams, refs: Sequence[str], hyps: Sequence[str]) -> dict[str, Any]:
    """One tuning row: the point and its dev WER with the error and reference-word counts."""
    total = word_error_rate(refs, hyps).total
    return {"params": point.to_dict(), "wer": total.rate, "errors": total.errors,
            "ref_words": total.ref}  # fmt: skip


def tune_fusion(
    log_probs: Sequence[Tensor | np.ndarray],
    refs: Sequence[str],
    *,
    lm: WordLM,
    ilm: WordLM | None = None,
    grid: FusionGrid | None = None,
    config: BeamConfig | None = None,
    units: CharUnits | None = None,
    on_utterance: Callable[[], Any] | None = None,
) -> FusionTuning:
    """Decode the dev set at every grid point and pick the lowest WER.

    Raises:
        PrunekitError: different numbers of utterances and references.
    """
    _check_references(log_probs, refs)
    points = (grid or FusionGrid()).points(with_ilm=ilm is not None)
    texts = decode_grid(
        log_probs, points, lm=lm, ilm=ilm, config=config, units=units, on_utterance=on_utterance
    )
    rows = []
    for p, hyps in zip(points, texts, strict=True):
        rows.append(_score(p, refs, hyps))
    best = min(range(len(rows)), key=lambda i: (rows[i]["wer"], i))
    return FusionTuning(points[best], rows[best]["wer"], rows)


def _axes(grid: FusionGrid, with_ilm: bool) -> dict[str, tuple[float, ...]]:
    return {
        "lm_weight": tuple(grid.lm_weight),
        "ilm_weight": tuple(sorted(set(grid.ilm_weight))) if with_ilm else (0.0,),
        "word_bonus": tuple(grid.word_bonus),
    }


def tune_fusion_coordinate(
    log_probs: Sequence[Tensor | np.ndarray],
    refs: Sequence[str],
    *,
    lm: WordLM,
    ilm: WordLM | None = None,
    grid: FusionGrid | None = None,
    start: FusionParams | None = None,
    max_rounds: int = 3,
    config: BeamConfig | None = None,
    units: CharUnits | None = None,
    on_utterance: Callable[[], Any] | None = None,
) -> FusionTuning:
    """Tune one weight at a time over its grid values, the others held, until a round changes
    nothing (at most `max_rounds`); a point is decoded once (ties keep the current point).

    Starts at `start`, else at lambda and beta in the middle of their lists and mu at its
    smallest value. Far fewer dev decodes than `tune_fusion`'s full grid (about 3 per weight per
    round), at the risk of a local optimum.

    Raises:
        PrunekitError: different numbers of utterances and references.
    """
    _check_references(log_probs, refs)
    axes = _axes(grid or FusionGrid(), ilm is not None)
    if start is None:
        start = FusionParams(
            lm_weight=axes["lm_weight"][(len(axes["lm_weight"]) - 1) // 2],
            ilm_weight=axes["ilm_weight"][0],
            word_bonus=axes["word_bonus"][(len(axes["word_bonus"]) - 1) // 2],
        )
    rows: dict[FusionParams, dict] = {}

    def evaluate(points: list[FusionParams]) -> None:
        new = [p for p in dict.fromkeys(points) if p not in rows]
        if not new:
            return
        texts = decode_grid(
            log_probs, new, lm=lm, ilm=ilm, config=config, units=units, on_utterance=on_utterance
        )
        for p, hyps in zip(new, texts, strict=True):
            rows[p] = _score(p, refs, hyps)

    current = start
    evaluate([current])
    for _ in range(max_rounds):
        before = current
        for axis, values in axes.items():
            points = [dataclasses.replace(current, **{axis: v}) for v in values]
            points = [p for p in points if p.ilm_weight <= p.lm_weight or p == current]
            evaluate(points)
            best = min(points, key=lambda p: rows[p]["errors"])
            if rows[best]["errors"] < rows[current]["errors"]:
                current = best
        if current == before:
            break
    return FusionTuning(current, rows[current]["wer"], list(rows.values()))
