"""Shared speech fixtures: a tiny text corpus and a tiny synthetic speech corpus built once."""

from __future__ import annotations

import pytest

from prunekit.audio.speech_config import SpeechConfig


@pytest.fixture(scope="session")
def tiny_speech_cfg(tiny_corpus) -> SpeechConfig:
    """A speech corpus of 4 train, 2 dev and 4 test utterances from `tiny_corpus`, built serially."""
    return SpeechConfig(
        corpus=str(tiny_corpus),
        train_utterances=4,
        dev_utterances=2,
        test_utterances=4,
        max_words=12,
        engines={"espeak-ng": 1.0, "flite": 1.0},  # the fast engines (test_synth covers festival)
        workers=1,
        n_mels=40,
    )


@pytest.fixture(scope="session")
def tiny_speech(tiny_speech_cfg):
    """The corpus of `tiny_speech_cfg`, rendered into the test run's cache."""
    from prunekit.audio.corpus import speech_corpus

    return speech_corpus(tiny_speech_cfg, progress=False)
