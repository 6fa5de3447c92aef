"""LM scorers: batched scores of token sequences after histories of different lengths equal the
model's own full-sequence log-probabilities; WordLM caches and batches words."""

import pytest
import torch
from compact_helpers_asr import compact_rnn, compact_transformer, masked_transformer

from prunekit.asr.lm_scorer import ROOT, RNNScorer, WordLM, lm_scorer
from prunekit.asr.transformer_scorer import TransformerScorer
from prunekit.data.tokenizers import SentencePieceTokenizer, WordTokenizer
from prunekit.errors import PrunekitError
from prunekit.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig
from prunekit.runtime import fast_decoder

V = 30
HISTORIES = [[3, 4, 5, 6, 7], [8], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]  # 18 > max_rel_pos
WORDS = [[20, 21], [22], [23, 24, 25]]


def tiny_transformer() -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerLMConfig(vocab_size=V, d_model=16, n_layer=2, n_head=2, d_ff=32,
                              dropout=0.0, max_rel_pos=4)  # fmt: skip
    return TransformerLM(cfg).eval()


def tiny_rnn(cell: str) -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(RNNLMConfig(vocab_size=V, cell=cell, d_embed=8, d_hidden=12, n_layer=2,
                             dropout=0.0)).eval()  # fmt: skip


def full_logp(model, seq: list[int]) -> float:
    """log p(seq | <eos>) from one forward pass over the whole sequence."""
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([[1, *seq]])), -1)[0]
    return sum(float(lp[i, t]) for i, t in enumerate(seq))


def check_scorer(scorer, model, atol: float = 1e-4) -> None:
    start = scorer.start()
    scores, states = scorer.advance([start] * 3, HISTORIES)  # one batch, three lengths
    for s, h in zip(scores.tolist(), HISTORIES, strict=True):
        assert s == pytest.approx(full_logp(model, h), abs=atol)
    scores, after = scorer.advance(states, WORDS)  # ragged histories x ragged words
    for s, h, w, st in zip(scores.tolist(), HISTORIES, WORDS, after, strict=True):
        assert s == pytest.approx(full_logp(model, h + w) - full_logp(model, h), abs=atol)
        assert st.length == 1 + len(h) + len(w)
        with torch.no_grad():
            last = torch.log_softmax(model(torch.tensor([[1, *h, *w]])), -1)[0, -1]
        torch.testing.assert_close(st.log_probs, last, atol=atol, rtol=0)


def test_transformer_eager_and_runtime_match_forward():
    m = tiny_transformer()
    check_scorer(lm_scorer(m), m)
    check_scorer(lm_scorer(fast_decoder(m)), m)
    assert isinstance(lm_scorer(fast_decoder(m)), TransformerScorer)


def test_masked_and_compact_transformers():
    masked = masked_transformer(tiny_transformer())
    check_scorer(lm_scorer(masked), masked)  # parametrized weights, as they are
    small = compact_transformer(tiny_transformer())
    check_scorer(lm_scorer(small), small)
    check_scorer(lm_scorer(fast_decoder(small)), small)


def test_int8_and_csr_compact_models():
    """Dynamic int8 quantizes activations per call, so a batch shifts scores a little."""
    small = compact_transformer(tiny_transformer(), int8=True)
    check_scorer(lm_scorer(fast_decoder(small)), small, atol=1e-2)
    rnn = compact_rnn(tiny_rnn("lstm"))  # CSR gate matrices (LinearRNN)
    check_scorer(lm_scorer(rnn), rnn)
    gru8 = compact_rnn(tiny_rnn("gru"), int8=True)
    check_scorer(lm_scorer(gru8), gru8, atol=1e-2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_matches_forward(cell):
    m = tiny_rnn(cell)
    assert isinstance(lm_scorer(m), RNNScorer)
    check_scorer(lm_scorer(m), m)


def test_states_are_not_changed_by_later_calls():
    m = tiny_transformer()
    sc = lm_scorer(m)
    _, (a,) = sc.advance([sc.start()], [[3, 4]])
    first, _ = sc.advance([a], [[5]])
    sc.advance([a, a], [[6, 7], [8]])  # branch twice from the same state
    again, _ = sc.advance([a], [[5]])
    assert float(first) == pytest.approx(float(again), abs=1e-6)


def test_errors():
    m = tiny_transformer().train()
    with pytest.raises(PrunekitError, match=r"training mode: call model.eval\(\)"):
        lm_scorer(m)
    with pytest.raises(PrunekitError, match="cannot decode with a Linear"):
        lm_scorer(torch.nn.Linear(2, 2))
    sc = lm_scorer(m.eval())
    with pytest.raises(PrunekitError, match="empty token sequence"):
        sc.advance([sc.start()], [[]])
    tok = WordTokenizer.build("a b c")
    with pytest.raises(PrunekitError, match=f"the tokenizer has 5 ids but the LM has {V}"):
        WordLM(m, tok)


def sentence_logp(model, tok, words: list[str]) -> float:
    """log p(words, <eos> | <eos>) from one forward pass."""
    ids = [i for w in words for i in tok.encode(w)] + [tok.eos_id]
    return full_logp(model, ids)


def test_word_lm_sums_pieces_and_batches(tmp_path):
    text = "\n".join(["the cat sat on the mat", "a dog ran in the park", "the old man walked"] * 20)
    tok = SentencePieceTokenizer.train(text, vocab_size=20, cache_dir=tmp_path)
    sentence = ["the", "cat", "walked", "in", "the", "park"]
    assert tok.encode(" ".join(sentence)) == [i for w in sentence for i in tok.encode(w)]
    assert max(len(tok.encode(w)) for w in sentence) > 1  # some words are several pieces
    torch.manual_seed(0)
    cfg = TransformerLMConfig(vocab_size=tok.vocab_size, d_model=16, n_layer=1, n_head=2,
                              d_ff=32, dropout=0.0, max_rel_pos=4)  # fmt: skip
    model = TransformerLM(cfg).eval()
    wlm = WordLM(model, tok)
    node, total = ROOT, 0.0
    for w in sentence:
        ((node, s),) = wlm.score_words([(node, w)])
        total += s
    total += wlm.end_score(node)
    assert total == pytest.approx(sentence_logp(model, tok, sentence), abs=1e-4)
    calls = wlm.calls
    out = wlm.score_words([(ROOT, "the"), (ROOT, "dog"), (ROOT, "the"), (node, "cat")])
    assert wlm.calls == calls + 1  # "the" is cached; "dog" and "cat" go in one call
    assert out[0] == out[2]
    assert wlm.score_words([(ROOT, "dog")]) == [out[1]] and wlm.calls == calls + 1
    wlm.reset()  # node ids start again; scores are the same, recomputed
    assert wlm.score_words([(ROOT, "dog")])[0][1] == pytest.approx(out[1][1], abs=1e-6)
    assert wlm.calls == calls + 2


def test_word_lm_unknown_words():
    tok = WordTokenizer.build("a b c a b")
    torch.manual_seed(0)
    model = RNNLM(RNNLMConfig(vocab_size=tok.vocab_size, d_embed=8, d_hidden=8, n_layer=1,
                              dropout=0.0)).eval()  # fmt: skip
    wlm = WordLM(model, tok, unk_offset=-7.0)
    ((_, oov),) = wlm.score_words([(ROOT, "zebra")])
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([[1]])), -1)[0, 0]
    assert oov == pytest.approx(float(lp[0]) - 7.0, abs=1e-5)  # log p(<unk>) + offset
    ((_, known),) = wlm.score_words([(ROOT, "a")])
    assert known == pytest.approx(float(lp[tok.encode("a")[0]]), abs=1e-5)
