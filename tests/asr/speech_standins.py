"""Stand-in speech for fast tests: each character is a few frames of its own spectral template.

A voice shifts every template by its own offset, so a voice absent from training is "unseen".
A tiny CTC model learns to read these in a few hundred steps.
"""

import torch

from prunekit.audio.featureset import FeatureSet

WORDS = ["a", "be", "cab", "bad", "dead", "ace", "bee", "fade", "cafe", "deaf", "add", "ebb"]


def _templates(n_mels: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    chars = " abcdef"
    return {c: 3.0 * torch.randn(n_mels, generator=g) for c in chars}


def sentence(g: torch.Generator, n_words: int) -> str:
    picks = torch.randint(0, len(WORDS), (n_words,), generator=g).tolist()
    return " ".join(WORDS[i] for i in picks)


def render(text: str, voice: int, g: torch.Generator, n_mels: int) -> torch.Tensor:
    """(T, n_mels) features of `text` spoken by `voice`."""
    templates = _templates(n_mels)
    offset = 0.5 * torch.randn(n_mels, generator=torch.Generator().manual_seed(99 + voice))
    frames = [templates[" "].expand(6, n_mels)]
    for c in text:
        n = int(torch.randint(8, 13, (1,), generator=g))
        frames.append(templates[c].expand(n, n_mels))
    frames.append(templates[" "].expand(6, n_mels))
    x = torch.cat(frames) + offset
    return x + 0.3 * torch.randn(x.shape, generator=g) - 5.0


def speech_set(
    n: int, voices: list[int], *, seed: int, n_mels: int = 16, words=(1, 3)
) -> FeatureSet:
    """`n` utterances of 1-3 random words, voices assigned round-robin."""
    g = torch.Generator().manual_seed(seed)
    feats, texts, ids, names = [], [], [], []
    for i in range(n):
        text = sentence(g, int(torch.randint(words[0], words[1] + 1, (1,), generator=g)))
        voice = voices[i % len(voices)]
        feats.append(render(text, voice, g, n_mels))
        texts.append(text)
        ids.append(f"utt{seed}-{i}")
        names.append(f"voice{voice}")
    return FeatureSet.from_list(feats, texts, ids, names, {"n_mels": n_mels})


def speech_splits(n_train: int = 64, n_dev: int = 16, n_mels: int = 16) -> dict[str, FeatureSet]:
    """train (voices 0-2), dev (voices 0-2), test (voices 0 and 5; voice 5 unseen)."""
    test = speech_set(n_dev, [0, 5], seed=3, n_mels=n_mels)
    test.meta["unseen_voices"] = ["voice5"]
    return {
        "train": speech_set(n_train, [0, 1, 2], seed=1, n_mels=n_mels),
        "dev": speech_set(n_dev, [0, 1, 2], seed=2, n_mels=n_mels),
        "test": test,
    }


TINY_AM = {
    "arch": "ctc",
    "n_mels": 16,
    "conv_channels": 4,
    "d_input": 32,
    "d_hidden": 32,
    "n_layer": 2,
    "dropout": 0.0,
}
