"""CTC prefix beam search over character log-probs with word-level shallow fusion.

A hypothesis is a prefix of spoken-form text (no leading space, single spaces, maybe a trailing
one) with its CTC probability split as usual into paths ending in a blank (p_b) and in its last
character (p_nb); each frame extends it by the units whose log-probability is at least
`token_min_logp` (and always the frame's best unit). When a space closes a word, the word is
scored by the fused LMs, all new words of the frame in one batched call per LM:

    score = log p_CTC + lambda * log p_LM - mu * log p_ILM + beta * words

(seed 004's shallow fusion with internal-LM subtraction; the internal LM is estimated by the
density-ratio method, McDermott, Sak & Variani 2019: `ilm` is an LM trained on the acoustic
model's training transcripts). At the end the last word is scored and, with `end_of_sentence`,
log p(<eos> | words) of both LMs is added with the same weights. The beam keeps `beam_width`
prefixes and drops those scoring below the best + `beam_prune_logp`.

A space after a space (or before any word) leaves the text unchanged: the two label sequences
spell the same words, so their mass is summed into one prefix (exact, since a space can neither
repeat-merge with a letter nor start a word). Without pruning and without LMs the search computes
exact CTC prefix probabilities (tested against brute force).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunekit.asr.lm_scorer import ROOT, WordLM
from prunekit.asr.units import BLANK, CharUnits
from prunekit.errors import PrunekitError

NEG_INF = float("-inf")


def logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for Python floats (faster than numpy on scalars)."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


@dataclass(frozen=True, kw_only=True)
class FusionParams:
    """Fusion weights: lambda (`lm_weight`), mu (`ilm_weight`), beta (`word_bonus`, per word)."""

    lm_weight: float = 0.0
    ilm_weight: float = 0.0
    word_bonus: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionParams:
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass(frozen=True, kw_only=True)
class BeamConfig:
    """Search settings (see the module docstring)."""

    beam_width: int = 16
    token_min_logp: float = -5.0  # pyctcdecode's defaults for both thresholds
    beam_prune_logp: float = -10.0
    end_of_sentence: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.beam_width, int) or self.beam_width < 1:
            raise PrunekitError(f"beam_width={self.beam_width!r} must be an integer >= 1")
        for name in ("token_min_logp", "beam_prune_logp"):
            if not getattr(self, name) < 0:
                raise PrunekitError(
                    f"{name}={getattr(self, name)!r} must be < 0 (a log-probability margin)"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Hypothesis:
    """A decoded text: fused `score` = ctc + lambda lm - mu ilm + beta n_words (nats)."""

    text: str
    score: float
    ctc: float  # log p_CTC(text | audio)
    lm: float  # log p_LM(words, <eos>); 0 without an LM
    ilm: float
    n_words: int


class _Beam:
    """One prefix: CTC masses, the word being spelled, LM nodes and the fused LM score."""

    __slots__ = ("fused", "ilm", "ilm_node", "last", "lm", "lm_node", "n_words", "pb", "pending",
                 "pnb", "word")  # fmt: skip

    def __init__(self, last: int, word: str, parent: _Beam | None = None):
        self.pb = self.pnb = NEG_INF
        self.last, self.word, self.pending = last, word, ""
        if parent is None:
            self.lm_node = self.ilm_node = ROOT
            self.lm = self.ilm = self.fused = 0.0
            self.n_words = 0
        else:
            self.lm_node, self.ilm_node = parent.lm_node, parent.ilm_node
            self.lm, self.ilm, self.fused = parent.lm, parent.ilm, parent.fused
            self.n_words = parent.n_words


class _Next:
    """The prefixes of the next frame (`out`), built from the current beams."""

    __slots__ = ("index", "old", "out", "texts", "totals")

    def __init__(self, beams: dict[str, _Beam]):
        self.texts, self.old = list(beams), list(beams.values())
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.totals = [logaddexp(b.pb, b.pnb) for b in self.old]
        self.out: dict[str, _Beam] = {}

    def stay(self, i: int) -> _Beam:
        """The next-frame entry of current prefix i (same text), created empty on first use."""
        e = self.out.get(self.texts[i])
        if e is None:
            b = self.old[i]
            e = self.out[self.texts[i]] = _Beam(b.last, b.word, b)
        return e


Frame = tuple[float, float, np.ndarray, np.ndarray]  # blank log p, space log p, letters, log ps


def frame_candidates(log_probs: np.ndarray, token_min_logp: float, space_id: int) -> list[Frame]:
    """Per frame, the units with log p >= token_min_logp, plus the frame's best unit.

    Args:
        log_probs: (T, V) float64 log-probabilities; unit 0 is the blank.

    Returns:
        Per frame (blank log p, space log p, letter ids (K,), their log ps (K,)); a log p is -inf
        where that unit is not a candidate.
    """
    keep = log_probs >= token_min_logp  # (T, V)
    keep[np.arange(log_probs.shape[0]), log_probs.argmax(1)] = True
    blank = np.where(keep[:, BLANK], log_probs[:, BLANK], NEG_INF).tolist()
    space = np.where(keep[:, space_id], log_probs[:, space_id], NEG_INF).tolist()
    keep[:, [BLANK, space_id]] = False
    rows, cols = np.nonzero(keep)
    vals = log_probs[rows, cols]
    bounds = np.searchsorted(rows, np.arange(log_probs.shape[0] + 1)).tolist()
    return [
        (blank[t], space[t], cols[a:b], vals[a:b])
        for t, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]


def as_log_probs(log_probs: Tensor | np.ndarray, units: CharUnits) -> np.ndarray:
    """(T, V) log-probs as a float64 array, checked against the units.

    Raises:
        PrunekitError: not 2-D, or V differs from `units.size`.
    """
    if isinstance(log_probs, Tensor):
        log_probs = log_probs.detach().to("cpu", torch.float64).numpy()
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] != units.size:
        raise PrunekitError(
            f"log-probs of shape {lp.shape} do not fit {units.size} output units: pass one "
            "utterance's (T, V) CTC log-probabilities, trimmed to its length"
        )
    return lp


class CTCBeamSearch:
    """`search(log_probs)` -> n-best `Hypothesis` list, best first (see the module docstring)."""

    def __init__(
        self,
        lm: WordLM | None = None,
        ilm: WordLM | None = None,
        params: FusionParams | None = None,
        config: BeamConfig | None = None,
        units: CharUnits | None = None,
    ):
        """Args: lm, the fused LM; ilm, the density-ratio source LM (subtracted); params, the
        weights; config, the search settings; units, the acoustic model's (CharUnits())."""
        self.lm, self.ilm = lm, ilm
        self.params = params or FusionParams()
        self.config = config or BeamConfig()
        self.units = units or CharUnits()
        self.space = self.units.space_id
        self.chars = ["", *self.units.alphabet]

    def search(self, log_probs: Tensor | np.ndarray) -> list[Hypothesis]:
        """Decode one utterance's (T, V) log-probs; the n-best (up to beam_width) list."""
        lp = as_log_probs(log_probs, self.units)
        root = _Beam(-1, "")
        root.pb = 0.0
        beams = {"": root}
        for frame in frame_candidates(lp, self.config.token_min_logp, self.space):
            p_blank, p_space, ids, _ = frame
            if p_space == NEG_INF and ids.size == 0:  # only blank: every prefix stays
                for b in beams.values():
                    b.pb, b.pnb = logaddexp(b.pb, b.pnb) + p_blank, NEG_INF
                continue
            beams = self._prune(self._extend(beams, frame))
        return self._finish(beams)

    def _extend(self, beams: dict[str, _Beam], frame: Frame) -> dict[str, _Beam]:
        """All prefixes one frame later: stays (blank, repeat, extra space), words closed by a
        space (scored by the LMs), and the best `beam_width` letter extensions."""
        p_blank, p_space, ids, logp = frame
        nxt = _Next(beams)
        letter_pos = {c: k for k, c in enumerate(ids.tolist())}
        pending = []
        for i, (text, b) in enumerate(beams.items()):
            total = nxt.totals[i]
            if p_blank > NEG_INF:
                e = nxt.stay(i)
                e.pb = logaddexp(e.pb, total + p_blank)
            k = letter_pos.get(b.last)
            if k is not None and b.pnb > NEG_INF:  # a repeat without a blank merges
                e = nxt.stay(i)
                e.pnb = logaddexp(e.pnb, b.pnb + float(logp[k]))
            if p_space == NEG_INF:
                continue
            if not b.word:  # before any word or after a space: text unchanged
                e = nxt.stay(i)
                e.pnb = logaddexp(e.pnb, total + p_space)
                continue
            key = text + " "  # closes b.word
            e = nxt.out.get(key)
            if e is None and key in nxt.index:
                e = nxt.stay(nxt.index[key])
            if e is None:
                e = nxt.out[key] = _Beam(self.space, "", b)
                e.pending = b.word
                pending.append(e)
            e.pnb = logaddexp(e.pnb, total + p_space)
        if ids.size:
            self._letters(nxt, ids, logp, letter_pos)
        if pending:
            self._score_words(pending)
        return nxt.out

    def _letters(self, nxt: _Next, ids: np.ndarray, logp: np.ndarray, letter_pos: dict) -> None:
        """Add the letter extensions: merged into existing prefixes where they spell one, else
        only the `beam_width` best (the others cannot survive pruning)."""
        old = nxt.old
        last = np.array([b.last for b in old])  # (B,)
        from_blank = np.array([b.pb for b in old])  # (B,)
        totals = np.array(nxt.totals)  # (B,)
        contrib = np.where(last[:, None] == ids[None, :], from_blank[:, None], totals[:, None])
        contrib = contrib + logp[None, :]  # (B, K): log mass into text + letter
        for j, b in enumerate(old):  # text_j = text_i + letter: merge into text_j's entry
            if not b.word:
                continue
            i, k = nxt.index.get(nxt.texts[j][:-1]), letter_pos.get(b.last)
            if i is None or k is None:
                continue
            if contrib[i, k] > NEG_INF:
                e = nxt.stay(j)
                e.pnb = logaddexp(e.pnb, float(contrib[i, k]))
            contrib[i, k] = NEG_INF
        flat = (contrib + np.array([b.fused for b in old])[:, None]).ravel()  # (B*K,)
        n = self.config.beam_width
        top = np.argpartition(-flat, n - 1)[:n] if flat.size > n else np.arange(flat.size)
        K, chars = ids.size, self.chars
        for f in top[np.isfinite(flat[top])].tolist():
            i, k = divmod(f, K)
            c, b = int(ids[k]), old[i]
            e = nxt.out[nxt.texts[i] + chars[c]] = _Beam(c, b.word + chars[c], b)
            e.pnb = float(contrib[i, k])

    def _score_words(self, beams: list[_Beam]) -> None:
        """Add the fused score of each beam's `pending` word (one batched call per LM)."""
        prm = self.params
        lm_scores = self._word_scores(self.lm, [(b.lm_node, b.pending) for b in beams])
        ilm_scores = self._word_scores(self.ilm, [(b.ilm_node, b.pending) for b in beams])
        for b, (lm_node, s_lm), (ilm_node, s_ilm) in zip(beams, lm_scores, ilm_scores, strict=True):
            b.lm_node, b.ilm_node = lm_node, ilm_node
            b.lm += s_lm
            b.ilm += s_ilm
            b.n_words += 1
            b.fused += prm.lm_weight * s_lm - prm.ilm_weight * s_ilm + prm.word_bonus
            b.pending = ""

    @staticmethod
    def _word_scores(lm: WordLM | None, requests: list[tuple[int, str]]) -> list[tuple[int, float]]:
        if lm is None:
            return [(ROOT, 0.0)] * len(requests)
        return lm.score_words(requests)

    def _prune(self, beams: dict[str, _Beam]) -> dict[str, _Beam]:
        scored = [(logaddexp(b.pb, b.pnb) + b.fused, t) for t, b in beams.items()]
        floor = max(s for s, _ in scored) + self.config.beam_prune_logp
        if len(scored) > self.config.beam_width:
            scored = heapq.nlargest(self.config.beam_width, scored)
        return {t: beams[t] for s, t in scored if s >= floor}

    def _finish(self, beams: dict[str, _Beam]) -> list[Hypothesis]:
        open_words = [b for b in beams.values() if b.word]
        for b in open_words:
            b.pending = b.word
        if open_words:
            self._score_words(open_words)
        prm, out = self.params, {}
        for text, b in beams.items():
            lm, ilm, fused = b.lm, b.ilm, b.fused
            if self.config.end_of_sentence:
                e_lm = self.lm.end_score(b.lm_node) if self.lm else 0.0
                e_ilm = self.ilm.end_score(b.ilm_node) if self.ilm else 0.0
                lm, ilm = lm + e_lm, ilm + e_ilm
                fused += prm.lm_weight * e_lm - prm.ilm_weight * e_ilm
            ctc = logaddexp(b.pb, b.pnb)
            final = text.rstrip(" ")
            prev = out.get(final)
            if prev is not None:  # "a b" and "a b ": same words, same LM scores
                ctc = logaddexp(ctc, prev.ctc)
            out[final] = Hypothesis(final, ctc + fused, ctc, lm, ilm, b.n_words)
        return sorted(out.values(), key=lambda h: -h.score)
