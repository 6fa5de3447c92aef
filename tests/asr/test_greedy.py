import pytest
import torch
from torch import nn

from prunekit.asr.greedy import error_rates, greedy_decode, greedy_error_rates
from prunekit.asr.units import CharUnits
from prunekit.audio.featureset import FeatureSet


class Spelling(nn.Module):
    """A fake acoustic model: feature 0 of every 4th frame is the unit id it 'hears'."""

    def forward(self, feats, lengths):
        ids = feats[:, ::4, 0].long()  # (B, T')
        out_len = (lengths + 3) // 4
        return torch.nn.functional.one_hot(ids, CharUnits().size).float().log(), out_len


def _utterance(ids: list[int]) -> torch.Tensor:
    x = torch.zeros(4 * len(ids), 3)
    x[::4, 0] = torch.tensor(ids, dtype=torch.float)
    return x


def test_greedy_collapses_repeats_and_blanks_and_keeps_the_order():
    u = CharUnits()
    a = u.encode("hello")
    spoken = {
        "hello": [a[0], a[1], 0, a[2], a[2], 0, a[3], a[4], a[4]],  # "hel" + blank + "lo"
        "a b": [0, u.encode("a")[0], u.space_id, u.space_id, u.encode("b")[0], 0],
        "": [0, 0],
    }
    texts = ["a b", "hello", "", "hello"]
    feats = [_utterance(spoken[t]) for t in texts]
    fs = FeatureSet.from_list(feats, texts, [str(i) for i in range(4)], ["v"] * 4)
    hyps = greedy_decode(Spelling(), fs, max_frames=40)  # several batches, sorted by length
    assert hyps == ["a b", "hello", "", "hello"]
    rates, hyps2 = greedy_error_rates(Spelling(), fs, max_frames=40)
    assert hyps2 == hyps and rates["wer"] == 0.0 and rates["cer"] == 0.0


def test_padding_in_a_batch_does_not_leak_into_hypotheses():
    u = CharUnits()
    short = _utterance(u.encode("ab"))
    long = _utterance(u.encode("abcdef"))
    fs = FeatureSet.from_list([short, long], ["ab", "abcdef"], ["s", "l"], ["v", "v"])
    assert greedy_decode(Spelling(), fs) == ["ab", "abcdef"]


def test_error_rates_count_words_and_characters():
    rates = error_rates(["the cat sat", "a dog"], ["the bat sat down", "a dog"])
    # words: 1 substitution + 1 insertion over 5 reference words
    assert rates["words"] == 5 and rates["word_errors"] == 2
    assert rates["wer"] == pytest.approx(2 / 5)
    # characters (spaces count): c->b, and " down" inserted (5) over 11 + 5 characters
    assert rates["chars"] == 16 and rates["char_errors"] == 6
    assert rates["cer"] == pytest.approx(6 / 16)
    assert error_rates([], [])["wer"] is None
