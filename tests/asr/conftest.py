import pytest
from asr_helpers import domain_sentences, train_lm, word_tokenizer


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
