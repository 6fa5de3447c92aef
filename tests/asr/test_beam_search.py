"""CTC prefix beam search: exact without pruning, pyctcdecode's results with the same scores,
fusion fixing what greedy decoding gets wrong, timing."""

import itertools
import logging
import time

import numpy as np
import pytest
from asr_helpers import domain_sentences, posteriors, pyctcdecode_decoder, train_lm

from prunekit.asr.beam_search import BeamConfig, CTCBeamSearch, FusionParams
from prunekit.asr.decode import decode_all
from prunekit.asr.lm_scorer import WordLM
from prunekit.asr.units import CharUnits
from prunekit.data.tokenizers import WordTokenizer
from prunekit.errors import PrunekitError
from prunekit.eval.wer import word_error_rate

FULL = BeamConfig(beam_width=10**6, token_min_logp=-1e9, beam_prune_logp=-1e9)
TINY = CharUnits(" ab")  # blank, space, a, b


def random_log_probs(rng, T: int, V: int, scale: float = 2.0) -> np.ndarray:
    x = rng.normal(size=(T, V)) * scale
    return x - np.logaddexp.reduce(x, axis=1, keepdims=True)


def brute_force(lp: np.ndarray, units: CharUnits) -> dict[str, float]:
    """log p(text) summed over every frame-level path (CTC collapse, spaces squeezed)."""
    out: dict[str, float] = {}
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        text = units.collapse(list(path))
        s = sum(lp[t, c] for t, c in enumerate(path))
        out[text] = np.logaddexp(out.get(text, -np.inf), s)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_exact_ctc_prefix_probabilities_without_lm(seed):
    rng = np.random.default_rng(seed)
    lp = random_log_probs(rng, int(rng.integers(1, 8)), TINY.size)
    exact = brute_force(lp, TINY)
    hyps = CTCBeamSearch(config=FULL, units=TINY).search(lp)
    assert {h.text for h in hyps} == set(exact)
    for h in hyps:
        assert h.ctc == pytest.approx(exact[h.text], abs=1e-9)
        assert h.score == h.ctc and h.lm == 0.0
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


@pytest.fixture(scope="module")
def tiny_lms():
    """Word LMs over words spelled with a and b (the TINY units)."""
    sents = ["ab ba", "ab ab ba", "ba ab", "a b ab", "bb ab ba", "ab ba ab"] * 20
    tok = WordTokenizer.build("\n".join(sents))
    text = "\n".join(sents)
    lm = WordLM(train_lm("transformer", tok, text, steps=30), tok)
    ilm = WordLM(train_lm("rnn", tok, text, steps=10, seed=3), tok)
    return lm, ilm


@pytest.mark.parametrize("seed", range(6))
def test_same_nbest_and_scores_as_pyctcdecode_exhaustive(tiny_lms, seed):
    lm, ilm = tiny_lms
    params = FusionParams(lm_weight=0.7, ilm_weight=0.3, word_bonus=0.5)
    rng = np.random.default_rng(100 + seed)
    lp = random_log_probs(rng, 7, TINY.size, scale=2.5)
    lm.reset(), ilm.reset()
    ours = CTCBeamSearch(lm, ilm, params, FULL, TINY).search(lp)
    theirs = pyctcdecode_decoder(TINY, lm, ilm, params).decode_beams(
        lp, beam_width=10**6, beam_prune_logp=-1e9, token_min_logp=-1e9
    )
    assert len(ours) == len(theirs) > 10
    for h, (text, _, _, logit_score, combined) in zip(ours, theirs, strict=True):
        assert h.text == text
        assert h.score == pytest.approx(combined, abs=1e-6)
        assert h.ctc == pytest.approx(logit_score, abs=1e-6)


@pytest.fixture(scope="module")
def domain_words(domain, domain_lm, source_lm):
    _, tok = domain
    return WordLM(domain_lm, tok), WordLM(source_lm, tok)


@pytest.mark.parametrize("n", [3, pytest.param(24, marks=pytest.mark.slow)])
def test_same_best_hypotheses_as_pyctcdecode(domain_words, caplog, n):
    """Realistic settings (beam 16, pruning), posteriors with noise and confusable letters."""
    lm, ilm = domain_words
    params = FusionParams(lm_weight=0.8, ilm_weight=0.2, word_bonus=1.0)
    config = BeamConfig(beam_width=16, token_min_logp=-5.0, beam_prune_logp=-10.0)
    units = CharUnits()
    rng = np.random.default_rng(0)
    ours, theirs, seconds = [], [], [0.0, 0.0]
    with caplog.at_level(logging.ERROR):
        decoder = pyctcdecode_decoder(units, lm, ilm, params)
    search = CTCBeamSearch(lm, ilm, params, config)
    for i, text in enumerate(domain_sentences(n, seed=11)):
        lp = posteriors(text, rng, noise=1.2, peak=6.0, confuse={2: ("e", 0.4)} if i % 2 else None)
        lm.reset(), ilm.reset()
        t0 = time.perf_counter()
        ours.append(search.search(lp)[0].text)
        seconds[0] += time.perf_counter() - t0
        lm.reset(), ilm.reset()
        t0 = time.perf_counter()
        theirs.append(decoder.decode_beams(lp, beam_width=16, beam_prune_logp=-10.0,
                                           token_min_logp=-5.0)[0][0])  # fmt: skip
        seconds[1] += time.perf_counter() - t0
    assert ours == theirs
    print(f"{n} utterances: ours {seconds[0]:.2f} s, pyctcdecode {seconds[1]:.2f} s")


def greedy(lp: np.ndarray, units: CharUnits) -> str:
    return units.collapse(lp.argmax(1).tolist())


def test_fusion_fixes_errors_of_greedy_decoding(domain_words):
    """Ambiguous letters (a confusable one wins slightly): the domain LM restores the words."""
    lm, ilm = domain_words
    units = CharUnits()
    rng = np.random.default_rng(3)
    refs = domain_sentences(6, seed=21)
    confusions = [{1: ("o", 0.6)}, {4: ("u", 0.6), 9: ("k", 0.5)}, {6: ("i", 0.6)}]
    lps = [posteriors(t, rng, noise=0.5, confuse=confusions[i % 3]) for i, t in enumerate(refs)]
    greedy_wer = word_error_rate(refs, [greedy(lp, units) for lp in lps]).wer
    plain = decode_all(lps, [1.0] * len(lps)).texts  # no LM: the acoustic evidence alone
    fused = decode_all(lps, [1.0] * len(lps), lm=lm, ilm=ilm,
                       params=FusionParams(lm_weight=1.0, ilm_weight=0.2, word_bonus=1.0)).texts  # fmt: skip
    assert greedy_wer > 0.1
    assert word_error_rate(refs, plain).wer == pytest.approx(greedy_wer, abs=0.05)
    assert word_error_rate(refs, fused).wer < 0.5 * greedy_wer


def test_decode_all_timing(domain_words):
    lm, ilm = domain_words
    rng = np.random.default_rng(5)
    refs = domain_sentences(3, seed=4)
    lps = [posteriors(t, rng, noise=0.5) for t in refs]
    out = decode_all(lps, [2.0, 1.5, 0.5], lm=lm, ilm=ilm, params=FusionParams(lm_weight=0.5))
    t = out.timing
    assert t.utterances == 3 and t.audio_seconds == 4.0
    assert t.rtf == pytest.approx(t.decode_seconds / 4.0)
    assert 0 < t.lm_seconds <= t.decode_seconds and 0 < t.lm_share <= 1
    assert t.lm_calls > 0 and t.lm_tokens > 0
    assert out.texts == refs and [n[0].text for n in out.nbest] == refs
    assert set(t.to_dict()) >= {"rtf", "lm_share", "decode_seconds", "audio_seconds"}


def test_bad_input():
    with pytest.raises(PrunekitError, match="beam_width=0 must be an integer >= 1"):
        BeamConfig(beam_width=0)
    with pytest.raises(PrunekitError, match="token_min_logp=1.0 must be < 0"):
        BeamConfig(token_min_logp=1.0)
    with pytest.raises(PrunekitError, match=r"log-probs of shape \(5, 3\) do not fit 29 output"):
        CTCBeamSearch().search(np.zeros((5, 3)))
    with pytest.raises(PrunekitError, match="got 1 durations for 2 utterances"):
        decode_all([np.zeros((2, 29))] * 2, [1.0])
    with pytest.raises(PrunekitError, match="durations must be > 0"):
        decode_all([np.zeros((2, 29))], [0.0])


def test_fusion_params_round_trip():
    p = FusionParams(lm_weight=0.5, ilm_weight=0.1, word_bonus=2.0)
    assert FusionParams.from_dict(p.to_dict()) == p


def test_no_lm_at_equal_width_never_worse_than_pyctcdecode(caplog):
    """pyctcdecode's beam slots are (prefix, last unit) pairs, ours prefixes: at the same width
    ours keeps more prefixes. Where the best texts differ, ours has the higher exact CTC prob."""
    from pyctcdecode.alphabet import Alphabet
    from pyctcdecode.decoder import BeamSearchDecoderCTC

    units = CharUnits()
    with caplog.at_level(logging.ERROR):
        theirs = BeamSearchDecoderCTC(Alphabet(["", *units.alphabet], False), None)
    ours = CTCBeamSearch(config=BeamConfig(beam_width=8))
    wide = CTCBeamSearch(config=BeamConfig(beam_width=256, beam_prune_logp=-30.0))
    rng = np.random.default_rng(0)
    same = 0
    lps = [posteriors(t, rng, noise=1.2, peak=6.0) for t in domain_sentences(30, seed=3)]
    for lp in lps[20:]:  # utterance 24: pyctcdecode keeps "dogc" over "dog"
        a = ours.search(lp)[0]
        b = theirs.decode_beams(lp, beam_width=8, beam_prune_logp=-10.0, token_min_logp=-5.0)[0]
        if a.text == b[0]:
            same += 1
            assert a.ctc >= b[3] - 1e-9  # the same text, at least as much of its mass kept
            continue
        exact = {h.text: h.ctc for h in wide.search(lp)}
        assert exact[a.text] > exact.get(b[0], -np.inf)
    assert 3 <= same < 10
