"""Grid tuning of lambda, mu, beta on a dev set."""

import json

import pytest

from prunekit.asr.beam_search import FusionParams
from prunekit.asr.fusion import FusionGrid, decode_grid, tune_fusion
from prunekit.errors import PrunekitError


def test_grid_points():
    grid = FusionGrid(lm_weight=(0.0, 0.5), ilm_weight=(0.0, 0.2), word_bonus=(0.0, 1.0))
    pts = grid.points()
    assert FusionParams(lm_weight=0.0, ilm_weight=0.2, word_bonus=0.0) not in pts  # mu > lambda
    assert len(pts) == 6
    assert {p.ilm_weight for p in grid.points(with_ilm=False)} == {0.0}
    with pytest.raises(PrunekitError, match="fusion grid word_bonus is empty"):
        FusionGrid(word_bonus=())


def test_tuning_picks_the_lm(dev):
    refs, lps, lm, ilm = dev
    grid = FusionGrid(lm_weight=(0.0, 1.0), ilm_weight=(0.0, 0.2), word_bonus=(0.0, 1.0))
    tuned = tune_fusion(lps, refs, lm=lm, ilm=ilm, grid=grid)
    rows = {tuple(r["params"].values()): r["wer"] for r in tuned.grid}
    assert len(rows) == len(grid.points())
    no_lm = min(w for (lam, _, _), w in rows.items() if lam == 0.0)
    assert tuned.best.lm_weight == 1.0 and tuned.best_wer < no_lm
    assert tuned.best_wer == min(rows.values())
    stored = json.loads(json.dumps(tuned.to_dict()))
    assert FusionParams.from_dict(stored["best"]) == tuned.best
    assert stored["best_wer"] == tuned.best_wer and len(stored["grid"]) == len(rows)


def test_grid_points_share_lm_caches(dev):
    refs, lps, lm, ilm = dev
    points = FusionGrid(lm_weight=(0.5, 1.0), ilm_weight=(0.0,), word_bonus=(0.0, 1.0)).points()
    before = lm.calls
    decode_grid(lps, points[:1], lm=lm, ilm=ilm)
    one = lm.calls - before
    texts = decode_grid(lps, points, lm=lm, ilm=ilm)
    assert len(texts) == 4 and all(len(t) == len(refs) for t in texts)
    assert lm.calls - before - one < 2 * one  # four points cost well under four times one


def test_mismatched_dev_set(dev):
    refs, lps, lm, _ = dev
    with pytest.raises(PrunekitError, match="got 5 utterances and 4 references"):
        tune_fusion(lps, refs[:4], lm=lm)
