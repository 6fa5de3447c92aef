"""Coordinate search of lambda, mu, beta: fewer dev decodes than the grid, never worse than its start."""

import pytest

from prunekit.asr.beam_search import FusionParams
from prunekit.asr.fusion import FusionGrid, tune_fusion, tune_fusion_coordinate
from prunekit.errors import PrunekitError

GRID = FusionGrid(lm_weight=(0.0, 0.5, 1.0), ilm_weight=(0.0, 0.2), word_bonus=(0.0, 1.0, 2.0))


def test_coordinate_search_matches_the_grid_with_fewer_points(dev):
    refs, lps, lm, ilm = dev
    full = tune_fusion(lps, refs, lm=lm, ilm=ilm, grid=GRID)
    start = FusionParams(lm_weight=0.0, ilm_weight=0.0, word_bonus=0.0)  # no LM at all
    coord = tune_fusion_coordinate(lps, refs, lm=lm, ilm=ilm, grid=GRID, start=start)
    assert coord.best_wer == pytest.approx(full.best_wer)
    assert coord.best.lm_weight > 0  # it moved away from the LM-free start
    assert len(coord.grid) < len(full.grid) == len(GRID.points())
    seen = [tuple(r["params"].values()) for r in coord.grid]
    assert len(seen) == len(set(seen))  # every point decoded once
    assert all(mu <= lam or (lam, mu, beta) == (0.0, 0.0, 0.0) for lam, mu, beta in seen)
    by_point = {tuple(r["params"].values()): r["wer"] for r in coord.grid}
    assert coord.best_wer == min(by_point.values()) <= by_point[(0.0, 0.0, 0.0)]


def test_default_start_and_no_ilm(dev):
    refs, lps, lm, _ = dev
    coord = tune_fusion_coordinate(lps, refs, lm=lm, grid=GRID)
    first = coord.grid[0]["params"]
    assert first == {"lm_weight": 0.5, "ilm_weight": 0.0, "word_bonus": 1.0}  # middle, mu lowest
    assert {r["params"]["ilm_weight"] for r in coord.grid} == {0.0}


def test_calls_back_per_utterance_and_checks_refs(dev):
    refs, lps, lm, _ = dev
    ticks = []
    tune_fusion_coordinate(
        lps, refs, lm=lm, grid=GRID, max_rounds=1, on_utterance=lambda: ticks.append(1)
    )
    assert len(ticks) > 0 and len(ticks) % len(refs) == 0
    with pytest.raises(PrunekitError, match="got 5 utterances and 4 references"):
        tune_fusion_coordinate(lps, refs[:4], lm=lm)
