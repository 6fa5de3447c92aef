"""Word and character error rates (jiwer), per-utterance counts, WER by word frequency and by
acoustic difficulty (`difficulty_groups`: utterances binned by the acoustic model's own CER).

`align(ref, hyp)` gives jiwer's minimum-edit alignment as one op per aligned position: "C"
(correct), "S", "D" (reference word missing) or "I" (hypothesis word inserted), each with its
reference and hypothesis word. Everything here, and the MAPSSWE test (`prunekit.eval.mapsswe`),
counts errors from these ops, so the numbers agree with each other.

WER by frequency (seed 004, Table 6): the words of the LM's training text are ranked by count and
cut into `n_bins` groups of (as near as whole words allow) equal token mass, most frequent first; a
word lands in the group holding the middle of its mass, and words never seen in that text in the
last (rarest) group. A substitution or deletion counts against the reference word's group, an
insertion against the inserted word's own group (it has no reference word; the LM's preference
for a frequent or a rare word is what an insertion shows), so the groups' errors add up to the
total. A group's WER is its errors over its reference words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jiwer

from prunekit.errors import PrunekitError

Op = tuple[str, str | None, str | None]  # (op, reference word, hypothesis word)


@dataclass(frozen=True)
class ErrorCounts:
    """Substitutions, deletions, insertions and hits against `ref` reference units."""

    ref: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        """errors / ref (0 when there are no reference units and no errors; inf with errors)."""
        if self.ref == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.ref + other.ref, self.sub + other.sub, self.dele + other.dele,
            self.ins + other.ins,
        )  # fmt: skip

    def to_dict(self) -> dict[str, float]:
        return {"ref": self.ref, "sub": self.sub, "del": self.dele, "ins": self.ins,
                "errors": self.errors, "rate": self.rate}  # fmt: skip


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
    if len(refs) != len(hyps):
        raise PrunekitError(
            f"got {len(refs)} references and {len(hyps)} hypotheses: pass one hypothesis per "
            "reference, in the same order"
        )


def _ops_of(ref: list[str], hyp: list[str], chunks: list) -> list[Op]:
    ops: list[Op] = []
    for ch in chunks:
        r = ref[ch.ref_start_idx : ch.ref_end_idx]
        h = hyp[ch.hyp_start_idx : ch.hyp_end_idx]
        if ch.type == "equal":
            ops += [("C", a, b) for a, b in zip(r, h, strict=True)]
        elif ch.type == "substitute":
            ops += [("S", a, b) for a, b in zip(r, h, strict=True)]
        elif ch.type == "delete":
            ops += [("D", a, None) for a in r]
        else:
            ops += [("I", None, b) for b in h]
    return ops


def align_all(refs: Sequence[str], hyps: Sequence[str]) -> list[list[Op]]:
    """Per utterance, the word alignment ops (see the module docstring)."""
    _check_pairs(refs, hyps)
    out: list[list[Op]] = [[] for _ in refs]
    both = [i for i, (r, h) in enumerate(zip(refs, hyps, strict=True)) if r.split() and h.split()]
    if both:
        res = jiwer.process_words([refs[i] for i in both], [hyps[i] for i in both])
        for j, i in enumerate(both):
            out[i] = _ops_of(res.references[j], res.hypotheses[j], res.alignments[j])
    for i, (r, h) in enumerate(zip(refs, hyps, strict=True)):  # an empty side: all D or all I
        if not (r.split() and h.split()):
            out[i] = [("D", w, None) for w in r.split()] + [("I", None, w) for w in h.split()]
    return out


def align(ref: str, hyp: str) -> list[Op]:
    """The word alignment ops of one utterance."""
    return align_all([ref], [hyp])[0]


def counts_of(ops: Sequence[Op]) -> ErrorCounts:
    """Error counts of one utterance's alignment ops."""
    kinds = Counter(op for op, _, _ in ops)
    return ErrorCounts(kinds["C"] + kinds["S"] + kinds["D"], kinds["S"], kinds["D"], kinds["I"])


@dataclass(frozen=True)
class WERResult:
    """Total and per-utterance word error counts."""

    total: ErrorCounts
    utterances: list[ErrorCounts]

    @property
    def wer(self) -> float:
        return self.total.rate

    def to_dict(self) -> dict:
        return {"wer": self.wer, **self.total.to_dict(),
                "utterances": [u.to_dict() for u in self.utterances]}  # fmt: skip


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> WERResult:
    """WER of hypotheses against references (whitespace-separated words).

    Raises:
        PrunekitError: different numbers of references and hypotheses.
    """
    per = [counts_of(ops) for ops in align_all(refs, hyps)]
    return WERResult(sum(per, ErrorCounts()), per)


def char_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
    """Character error counts (jiwer's CER: spaces count, runs of spaces squeezed).

    Raises:
        PrunekitError: different numbers of references and hypotheses.
    """
    _check_pairs(refs, hyps)
    total = ErrorCounts()
    for r, h in zip(refs, hyps, strict=True):
        r, h = " ".join(r.split()), " ".join(h.split())
        if not r or not h:
            total += ErrorCounts(len(r), 0, len(r), len(h))
            continue
        out = jiwer.process_characters(r, h)
        total += ErrorCounts(out.hits + out.substitutions + out.deletions, out.substitutions,
                             out.deletions, out.insertions)  # fmt: skip
    return total


class FrequencyBins:
    """Word -> frequency group (0 = most frequent), equal token mass per group (module doc)."""

    def __init__(self, counts: Counter[str], n_bins: int = 4):
        if n_bins < 1:
            raise PrunekitError(f"n_bins={n_bins} must be >= 1")
        total = sum(counts.values())
        if total == 0:
            raise PrunekitError(
                "the LM training text is empty: pass the text the LM was trained on"
            )
        self.n_bins = n_bins
        self.bins: dict[str, int] = {}
        seen = 0
        for word in sorted(counts, key=lambda w: (-counts[w], w)):
            middle = seen + counts[word] / 2
            self.bins[word] = min(n_bins - 1, int(n_bins * middle / total))
            seen += counts[word]
        self.mass = [0] * n_bins
        for word, b in self.bins.items():
            self.mass[b] += counts[word]

    @classmethod
    def from_text(cls, text: str, n_bins: int = 4) -> FrequencyBins:
        """Groups of the whitespace-separated words of `text` (the LM's training text)."""
        return cls(Counter(text.split()), n_bins)

    def bin_of(self, word: str) -> int:
        return self.bins.get(word, self.n_bins - 1)


def wer_by_frequency(
    refs: Sequence[str], hyps: Sequence[str], bins: FrequencyBins
) -> list[ErrorCounts]:
    """Error counts per frequency group, most frequent first (attribution: module docstring)."""
    groups = [[0, 0, 0, 0] for _ in range(bins.n_bins)]  # ref, sub, del, ins
    for ops in align_all(refs, hyps):
        for op, r, h in ops:
            if op == "I":
                groups[bins.bin_of(h)][3] += 1
                continue
            g = groups[bins.bin_of(r)]
            g[0] += 1
            g[1] += op == "S"
            g[2] += op == "D"
    return [ErrorCounts(*g) for g in groups]


DIFFICULTY_EDGES = (0.1, 0.2, 0.3, 0.4)


def difficulty_groups(
    refs: Sequence[str], base_hyps: Sequence[str], edges: Sequence[float] = DIFFICULTY_EDGES
) -> list[list[int]]:
    """Utterance indices grouped by the CER of `base_hyps` (the acoustic model alone).

    Group k holds the utterances with edges[k-1] <= CER < edges[k] (open at both ends: k = 0 is
    CER < edges[0], the last is CER >= edges[-1]), so `len(edges) + 1` groups. With the no-LM
    hypotheses as the base, `wer_of_groups` then shows how an LM's gain depends on how well the
    acoustic model heard each utterance.

    Raises:
        PrunekitError: different numbers of references and hypotheses, or edges not increasing.
    """
    _check_pairs(refs, base_hyps)
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise PrunekitError(f"difficulty edges {list(edges)} must increase")
    groups: list[list[int]] = [[] for _ in range(len(edges) + 1)]
    for i, (r, h) in enumerate(zip(refs, base_hyps, strict=True)):
        cer = char_error_rate([r], [h]).rate
        groups[sum(cer >= e for e in edges)].append(i)
    return groups


def wer_of_groups(
    refs: Sequence[str], hyps: Sequence[str], groups: Sequence[Sequence[int]]
) -> list[ErrorCounts]:
    """Word error counts of `hyps` within each group of utterance indices."""
    per = word_error_rate(refs, hyps).utterances
    return [sum((per[i] for i in g), ErrorCounts()) for g in groups]


def wer_by_difficulty(
    refs: Sequence[str],
    base_hyps: Sequence[str],
    systems: Mapping[str, Sequence[str]],
    edges: Sequence[float] = DIFFICULTY_EDGES,
) -> dict[str, Any]:
    """JSON record: each system's word errors in the groups of `difficulty_groups`.

    Returns:
        {"edges": [...], "utterances": [n per group], "systems": {name: [ErrorCounts dicts]}}.
    """
    groups = difficulty_groups(refs, base_hyps, edges)
    return {
        "edges": list(edges),
        "utterances": [len(g) for g in groups],
        "systems": {name: [c.to_dict() for c in wer_of_groups(refs, hyps, groups)]
                    for name, hyps in systems.items()},
    }  # fmt: skip
