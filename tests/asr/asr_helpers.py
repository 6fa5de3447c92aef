"""Tiny LMs trained in the test, synthetic CTC posteriors from known text, pyctcdecode adapter."""

from __future__ import annotations

import numpy as np
import torch

from prunekit.asr.units import CharUnits
from prunekit.data.tokenizers import WordTokenizer
from prunekit.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig

SUBJECTS = ["the cat", "the dog", "a bird", "my friend", "the old man", "her sister"]
VERBS = ["sat on", "looked at", "ran to", "walked past", "slept near"]
OBJECTS = ["the mat", "the door", "a tree", "the red car", "the river", "a small house"]


def domain_sentences(n: int, seed: int = 0) -> list[str]:
    """n sentences of a tiny grammar (subject verb object), the LMs' domain."""
    rng = np.random.default_rng(seed)
    return [
        f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {VERBS[rng.integers(len(VERBS))]} "
        f"{OBJECTS[rng.integers(len(OBJECTS))]}"
        for _ in range(n)
    ]


def train_lm(kind: str, tokenizer, text: str, steps: int = 150, seed: int = 0):
    """A 1-layer TransformerLM or RNNLM trained `steps` Adam steps on `text` (eval mode)."""
    torch.manual_seed(seed)
    V = tokenizer.vocab_size
    if kind == "transformer":
        cfg = TransformerLMConfig(vocab_size=V, d_model=32, n_layer=1, n_head=2, d_ff=64,
                                  dropout=0.0, max_rel_pos=8)  # fmt: skip
        model = TransformerLM(cfg)
    else:
        model = RNNLM(RNNLMConfig(vocab_size=V, d_embed=32, d_hidden=32, n_layer=1, dropout=0.0))
    stream = torch.cat([torch.tensor([tokenizer.eos_id]), tokenizer.encode_corpus(text)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    T = 16
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - T - 1, (16,), generator=gen)
        x = torch.stack([stream[s : s + T] for s in starts.tolist()])
        y = torch.stack([stream[s + 1 : s + T + 1] for s in starts.tolist()])
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def word_tokenizer(sentences: list[str]) -> WordTokenizer:
    return WordTokenizer.build("\n".join(sentences))


def posteriors(
    text: str,
    rng: np.random.Generator,
    *,
    noise: float = 1.0,
    peak: float = 7.0,
    confuse: dict[int, tuple[str, float]] | None = None,
    units: CharUnits | None = None,
) -> np.ndarray:
    """(T, V) log-probs spelling `text`: per character 1-2 frames of it, then 1-2 blanks.

    Logits: `peak` on the intended unit plus Gaussian noise of std `noise`. `confuse[i] = (c, m)`
    makes the i-th character's frames prefer character c by margin m over the true one.
    """
    units = units or CharUnits()
    frames: list[np.ndarray] = []
    ids = units.encode(text)
    for i, u in enumerate(ids):
        for _ in range(int(rng.integers(1, 3))):
            z = rng.normal(0.0, noise, units.size)
            z[u] += peak
            if confuse and i in confuse:
                other, margin = confuse[i]
                z[units.encode(other)[0]] = z[u] + margin
            frames.append(z)
        for _ in range(int(rng.integers(1, 3))):
            z = rng.normal(0.0, noise, units.size)
            z[0] += peak
            frames.append(z)
    x = np.stack(frames)
    return x - np.logaddexp.reduce(x, axis=1, keepdims=True)


def pyctcdecode_decoder(units: CharUnits, lm, ilm, params):
    """A pyctcdecode decoder whose word scores are exactly our fused WordLM scores."""
    from pyctcdecode.alphabet import Alphabet
    from pyctcdecode.decoder import BeamSearchDecoderCTC
    from pyctcdecode.language_model import AbstractLanguageModel

    class FusedLM(AbstractLanguageModel):
        order = 1000  # only used by prune_history, which stays off

        def get_start_state(self):
            return (0, 0)

        def score_partial_token(self, partial_token: str) -> float:
            return 0.0

        def score(self, prev_state, word: str, is_last_word: bool = False):
            a, b = prev_state
            score = 0.0
            if word:
                ((a, s_lm),) = lm.score_words([(a, word)])
                ((b, s_ilm),) = ilm.score_words([(b, word)])
                score += params.lm_weight * s_lm - params.ilm_weight * s_ilm + params.word_bonus
            if is_last_word:
                score += params.lm_weight * lm.end_score(a) - params.ilm_weight * ilm.end_score(b)
            return score, (a, b)

    return BeamSearchDecoderCTC(Alphabet(["", *units.alphabet], False), FusedLM())
