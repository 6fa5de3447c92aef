"""The matched-pairs sentence-segment word error (MAPSSWE) test of Gillick & Cox (1989).

Two systems' alignments of the same references are cut into segments bounded by at least
`min_good` words both systems got right (sctk's default 2); segments where neither made an error
are dropped. With d_k = errors of system 1 - errors of system 2 in segment k (n segments), the
statistic is Z = mean(d) / (std(d) / sqrt(n)) (sample std, n - 1), normal under the null
hypothesis of equal error rates; `p_value` is its two-sided p.

This follows sctk's `sc_stats -t mapsswe` (mtchprs.c, statdist.c) step by step, including its
segmentation state machine (segments start `min_good - 1` words before the last correct word
preceding an error and end at the `min_good`-th correct word after it; a segment's reference count
is the mean of the two systems' counts, rounded down; the sentence end closes the last one, with
system 2's trailing insertions, as sctk 2.4 does) and its p-value, which it reads from a table
of the normal distribution at z = 0, 0.01, ..., 5.14 rounded down to the grid (`p_value_sctk`);
the test suite checks both against Debian's sctk on the same alignments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prunekit.errors import PrunekitError
from prunekit.eval.wer import Op, align_all

Segment = tuple[int, int, int]  # (reference words, errors of system 1, errors of system 2)


@dataclass(frozen=True)
class MapssweResult:
    """The test's statistic, p-values, and the segment totals sctk prints."""

    segments: int
    ref_words: int  # in the segments
    errors1: int
    errors2: int
    mean: float  # of errors1 - errors2 per segment
    std_dev: float
    z: float
    p_value: float  # two-sided, exact normal tail
    p_value_sctk: float  # two-sided, sctk's table lookup
    min_good: int

    def significant(self, alpha: float = 0.005) -> bool:
        """True if the systems differ at level `alpha` (seed 004 uses p < 0.005)."""
        return self.p_value < alpha

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _states(ops: Sequence[Op | str]) -> list[str]:
    return [op if isinstance(op, str) else op[0] for op in ops]


def segments(
    ops1: Sequence[Op | str], ops2: Sequence[Op | str], min_good: int = 2
) -> list[Segment]:
    """The error segments of one utterance aligned by two systems (sctk's `test_comp_sents`).

    Args:
        ops1, ops2: alignment ops ("C", "S", "D", "I", or `prunekit.eval.wer.align` tuples) of
            the same reference words.
    """
    p1, p2 = _states(ops1), _states(ops2)
    n1, n2, out = len(p1), len(p2), []

    def close(end1: int, end2: int) -> None:
        b1, b2 = max(0, eog1 - (min_good - 1)), max(0, eog2 - (min_good - 1))
        s1, s2 = p1[b1 : end1 + 1], p2[b2 : end2 + 1]
        err1, err2 = sum(s != "C" for s in s1), sum(s != "C" for s in s2)
        ref1, ref2 = sum(s != "I" for s in s1), sum(s != "I" for s in s2)
        if err1 or err2:
            out.append(((ref1 + ref2) // 2, err1, err2))

    i1 = i2 = eog1 = eog2 = good = 0
    state = "b"  # b: no open error; e: in an error region; g: counting correct words after one
    while i1 < n1:
        while i1 < n1 and p1[i1] == "I":
            i1, state = i1 + 1, "e"
        while i2 < n2 and p2[i2] == "I":
            i2, state = i2 + 1, "e"
        both = i1 < n1 and p1[i1] == "C" and i2 < n2 and p2[i2] == "C"
        if state == "b":
            if both:
                eog1, eog2 = i1, i2
            else:
                state = "e"
        elif both:
            good = 1 if state == "e" else good + 1
            if good == min_good:
                close(i1, i2)
                eog1, eog2, state = i1, i2, "b"
            else:
                state = "g"
        else:
            state = "e"
        i1 += i1 < n1
        i2 += i2 < n2
    if state != "b" or i2 < n2:  # an open error region, or system 2's trailing insertions
        close(n1 - 1, n2 - 1)
    return out


def sctk_normal_cdf(z: float) -> float:
    """sctk's `normprob`: Phi at |z| rounded down to a multiple of 0.01 (capped at 5.14), to 7
    decimals, as its table holds it."""
    grid = min(math.floor(abs(z) * 100 + 1e-9), 514) / 100
    return round(0.5 * math.erfc(-grid / math.sqrt(2)), 7)


def mapsswe_from_ops(
    ops1: Sequence[Sequence[Op | str]], ops2: Sequence[Sequence[Op | str]], min_good: int = 2
) -> MapssweResult:
    """The test on per-utterance alignment ops of two systems (same utterances, same order).

    Raises:
        PrunekitError: different utterance counts, or an utterance whose two alignments cover
            different numbers of reference words, or min_good < 1.
    """
    if min_good < 1:
        raise PrunekitError(f"min_good={min_good} must be >= 1 (sctk's default is 2)")
    if len(ops1) != len(ops2):
        raise PrunekitError(
            f"system 1 has {len(ops1)} utterances and system 2 {len(ops2)}: align both to the "
            "same references"
        )
    segs: list[Segment] = []
    for k, (a, b) in enumerate(zip(ops1, ops2, strict=True)):
        ra, rb = sum(s != "I" for s in _states(a)), sum(s != "I" for s in _states(b))
        if ra != rb:
            raise PrunekitError(
                f"utterance {k}: the systems' alignments cover {ra} and {rb} reference words: "
                "align both to the same references"
            )
        segs += segments(a, b, min_good)
    return _statistic(segs, min_good)


def _statistic(segs: list[Segment], min_good: int) -> MapssweResult:
    n = len(segs)
    diffs = [e1 - e2 for _, e1, e2 in segs]
    mean = sum(diffs) / n if n else 0.0
    ss = sum((d - mean) ** 2 for d in diffs)
    std = math.sqrt(ss / (n - 1)) if ss > 0 else 0.0
    z = mean / (std / math.sqrt(n)) if ss > 0 else 0.0
    return MapssweResult(
        segments=n,
        ref_words=sum(r for r, _, _ in segs),
        errors1=sum(e for _, e, _ in segs),
        errors2=sum(e for _, _, e in segs),
        mean=mean,
        std_dev=std,
        z=z,
        p_value=math.erfc(abs(z) / math.sqrt(2)),
        p_value_sctk=1.0 - 2.0 * (sctk_normal_cdf(z) - 0.5),
        min_good=min_good,
    )


def mapsswe(
    refs: Sequence[str], hyps1: Sequence[str], hyps2: Sequence[str], min_good: int = 2
) -> MapssweResult:
    """MAPSSWE test of two systems' hypotheses against the same references.

    Example:
        >>> r = mapsswe(["a b c d e f"] * 4, ["a b c d e f"] * 4, ["a x c d e f"] * 4)
        >>> r.segments, r.errors1, r.errors2
        (4, 0, 4)
    """
    return mapsswe_from_ops(align_all(refs, hyps1), align_all(refs, hyps2), min_good)
