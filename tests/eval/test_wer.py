import random

import jiwer
import pytest

from prunekit.errors import PrunekitError
from prunekit.eval.wer import (
    ErrorCounts,
    FrequencyBins,
    align,
    char_error_rate,
    difficulty_groups,
    wer_by_difficulty,
    wer_by_frequency,
    wer_of_groups,
    word_error_rate,
)
from prunekit.report.asr import difficulty_table

WORDS = ["a", "b", "c", "d", "e", "the", "of"]


def random_pairs(seed: int, n: int = 30):
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]
    hyps = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]
    return refs, hyps


@pytest.mark.parametrize("seed", range(3))
def test_matches_jiwer(seed):
    refs, hyps = random_pairs(seed)
    r = word_error_rate(refs, hyps)
    out = jiwer.process_words(refs, hyps)
    assert r.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert (r.total.sub, r.total.dele, r.total.ins) == (
        out.substitutions, out.deletions, out.insertions,
    )  # fmt: skip
    assert sum(r.utterances, ErrorCounts()) == r.total
    assert r.utterances[0].rate == pytest.approx(jiwer.wer(refs[0], hyps[0]))
    assert char_error_rate(refs, hyps).rate == pytest.approx(jiwer.cer(refs, hyps))


def test_alignment_and_empty_sides():
    assert align("a b c d", "a c d e") == [
        ("C", "a", "a"), ("D", "b", None), ("C", "c", "c"), ("C", "d", "d"), ("I", None, "e"),
    ]  # fmt: skip
    r = word_error_rate(["a b", "", "c"], ["", "x y", "c"])
    assert [u.errors for u in r.utterances] == [2, 2, 0]
    assert r.total == ErrorCounts(ref=3, sub=0, dele=2, ins=2) and r.wer == pytest.approx(4 / 3)
    assert ErrorCounts().rate == 0.0 and ErrorCounts(ins=1).rate == float("inf")
    assert char_error_rate(["ab"], [""]).to_dict()["del"] == 2
    with pytest.raises(PrunekitError, match="got 2 references and 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])


def test_frequency_bins_equal_mass():
    # counts: the 8, of 4, a 2, b 2, c 1, d 1, e 1, f 1 (total 20, 5 per group)
    text = " ".join(["the"] * 8 + ["of"] * 4 + ["a", "b"] * 2 + ["c", "d", "e", "f"])
    bins = FrequencyBins.from_text(text)
    # mass midpoints: the 4 -> 0; of 10 -> 2; a 13, b 15 -> 2, 3; c 16.5 .. f 19.5 -> 3
    assert [bins.bin_of(w) for w in ["the", "of", "a", "b", "c", "f"]] == [0, 2, 2, 3, 3, 3]
    assert bins.mass == [8, 0, 6, 6] and bins.bin_of("unseen") == 3
    with pytest.raises(PrunekitError, match="LM training text is empty"):
        FrequencyBins.from_text("  ")


def test_wer_by_frequency_attribution():
    bins = FrequencyBins.from_text(" ".join(["the"] * 8 + ["of"] * 4 + ["a", "b"] * 2 + ["c"]))
    refs = ["the of a c", "the the"]
    hyps = ["the a c the", "of the"]  # del "of"; insert "the"; sub the -> of
    groups = wer_by_frequency(refs, hyps, bins)
    total = word_error_rate(refs, hyps).total
    assert sum(groups, ErrorCounts()) == total
    the, of = bins.bin_of("the"), bins.bin_of("of")
    assert groups[the].ref == 3 and groups[the].sub == 1 and groups[the].ins == 1
    assert groups[of].ref == 1 and groups[of].dele == 1


def test_difficulty_groups_bin_by_the_base_cer_and_add_up():
    refs = ["abcdefghij", "abcdefghij", "abcdefghij", "abcdefghij x"]
    base = ["abcdefghij", "abcdefghiX", "abcdefgXYZ", "zzzzzzzzzz x"]  # CER 0, .1, .3, > .4
    groups = difficulty_groups(refs, base)
    assert groups == [[0], [1], [], [2], [3]]
    fused = ["abcdefghij", "abcdefghij", "abcdefghij", "zzzzzzzzzz x"]
    per = wer_of_groups(refs, fused, groups)
    assert sum(per, ErrorCounts()) == word_error_rate(refs, fused).total
    assert [c.errors for c in per] == [0, 0, 0, 0, 1]
    record = wer_by_difficulty(refs, base, {"no_lm": base, "lm": fused})
    assert record["utterances"] == [1, 1, 0, 1, 1]
    assert (
        record["systems"]["lm"][3]["rate"] == 0.0 and record["systems"]["no_lm"][3]["rate"] == 1.0
    )
    rows = difficulty_table(record, {"no_lm": "no LM", "lm": "with LM"})
    assert (
        rows[0] == "| no-LM CER | utterances | words | WER no LM | WER with LM | change with LM |"
    )
    assert "| 30%-40% | 1 | 1 | 100.00 | 0.00 | -100.0 % |" in rows
    assert not any(r.startswith("| 20%-30%") for r in rows)  # empty groups are left out


def test_difficulty_groups_refuse_bad_edges():
    with pytest.raises(PrunekitError, match="must increase"):
        difficulty_groups(["a"], ["a"], edges=(0.3, 0.1))
