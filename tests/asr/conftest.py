import numpy as np
import pytest
from asr_helpers import domain_sentences, posteriors, train_lm, word_tokenizer

from prunekit.asr.lm_scorer import WordLM


@pytest.fixture(scope="session")
def domain():
    """(sentences, word tokenizer) of the tiny test domain."""
    sentences = domain_sentences(300)
    return sentences, word_tokenizer(sentences)


@pytest.fixture(scope="session")
def domain_lm(domain):
    """A 1-layer TransformerLM trained briefly on the domain (knows its word order)."""
    sentences, tok = domain
    return train_lm("transformer", tok, "\n".join(sentences), steps=150)


@pytest.fixture(scope="session")
def source_lm(domain):
    """A 1-layer LSTM LM barely trained on other domain text (the density-ratio source LM)."""
    _, tok = domain
    return train_lm("rnn", tok, "\n".join(domain_sentences(300, seed=7)), steps=20)


@pytest.fixture(scope="module")
def dev(domain, domain_lm, source_lm):
    """Five noisy dev utterances with confusable letters, the domain LM and the source LM."""
    _, tok = domain
    rng = np.random.default_rng(8)
    refs = domain_sentences(5, seed=31)
    confusions = [{1: ("o", 0.6)}, {4: ("u", 0.6)}, {6: ("i", 0.6)}]
    lps = [posteriors(t, rng, noise=0.5, confuse=confusions[i % 3]) for i, t in enumerate(refs)]
    return refs, lps, WordLM(domain_lm, tok), WordLM(source_lm, tok)
