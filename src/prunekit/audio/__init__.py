"""Speech data: wav files, offline synthesizers, speech corpora, augmentation and log-mel features.

The names below are imported lazily, so `import prunekit.audio` (done by the recipe parser for
`SpeechConfig`) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AugmentConfig": "speech_config",
    "SpeechConfig": "speech_config",
    "FeatureSet": "featureset",
    "LogMel": "features",
    "SpeechCorpus": "manifest",
    "Utterance": "manifest",
    "Voice": "synth",
    "english_voices": "synth",
    "synthesize": "synth",
    "load_audio": "wav",
    "read_wav": "wav",
    "write_wav": "wav",
    "resample": "resample",
    "speech_corpus": "corpus",
    "speech_features": "corpus_features",
    "corpus_features": "corpus_features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'prunekit.audio' has no attribute {name!r}")
    return getattr(importlib.import_module(f"prunekit.audio.{_EXPORTS[name]}"), name)
