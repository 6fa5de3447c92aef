"""`speech_features(cfg)`: log-mel features of a speech corpus's train / dev / test, cached.

Features are cached beside the synthetic corpus (`.../synthetic-KEY/features-FKEY/`) or, for
recordings, in `$PRUNEKIT_CACHE/speech/recordings-KEY/features-FKEY/`, FKEY a hash of the corpus
key and the feature settings. Every FeatureSet's `meta` holds the feature settings, the corpus
key, the seconds of audio, the train set's per-band mean and std (`train_mean`, `train_std`, for
normalization) and, for test, `unseen_voices`: the voices whose speakers never occur in train.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from prunekit.audio.corpus import cache_root, speech_corpus
from prunekit.audio.features import LogMel
from prunekit.audio.featureset import FeatureSet
from prunekit.audio.manifest import SPLIT_NAMES, SpeechCorpus, Utterance
from prunekit.audio.resample import resample
from prunekit.audio.speech_config import SpeechConfig
from prunekit.audio.wav import SAMPLE_RATE, read_wav
from prunekit.export.timing import num_threads

log = logging.getLogger(__name__)

FEATURE_VERSION = "logmel-2"


def features_dir(corpus: SpeechCorpus, fe: LogMel) -> Path:
    """Where the features of `corpus` computed by `fe` are cached."""
    settings = {"version": FEATURE_VERSION, "corpus": corpus.key, **feature_settings(fe)}
    fkey = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    inside = corpus.root.resolve().is_relative_to(cache_root().resolve())
    base = corpus.root if inside else cache_root() / f"recordings-{corpus.key[:16]}"
    return base / f"features-{fkey}"


def feature_settings(fe: LogMel) -> dict[str, Any]:
    """The settings that decide a LogMel's output."""
    names = ("n_mels", "win", "hop", "n_fft", "sample_rate", "fmin", "fmax", "eps")
    return {name: getattr(fe, name) for name in names}


def _featurize(
    utts: list[Utterance], fe: LogMel, bar: tqdm
) -> tuple[list[torch.Tensor], float, list[str]]:
    feats, seconds, resampled = [], 0.0, []
    for u in utts:
        wave, rate = read_wav(u.path)
        if rate != SAMPLE_RATE:
            resampled.append(f"{u.path} ({rate} Hz)")
            wave = resample(wave, rate, SAMPLE_RATE)
        seconds += wave.shape[0] / SAMPLE_RATE
        with torch.no_grad():
            feats.append(fe(wave))  # (frames, n_mels)
        bar.update()
    return feats, seconds, resampled


def _mean_std(feats: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation over all frames of (T_i, F) matrices."""
    total = sum(f.shape[0] for f in feats)
    s1 = sum(f.double().sum(0) for f in feats)  # (F,)
    s2 = sum(f.double().square().sum(0) for f in feats)
    mean = s1 / total
    std = (s2 / total - mean.square()).clamp(min=0).sqrt()
    return mean.tolist(), std.tolist()


def corpus_features(
    corpus: SpeechCorpus, *, n_mels: int = 80, progress: bool = True
) -> dict[str, FeatureSet]:
    """Log-mel FeatureSets {"train", "dev", "test"} of a corpus, computed once and cached."""
    fe = LogMel(n_mels=n_mels)
    folder = features_dir(corpus, fe)
    paths = {s: folder / f"{s}.safetensors" for s in SPLIT_NAMES}
    if all(p.is_file() for p in paths.values()):
        return {s: FeatureSet.load(p) for s, p in paths.items()}
    total = sum(len(corpus.splits[s]) for s in SPLIT_NAMES)
    bar = tqdm(total=total, unit="utt", desc="log-mel features", disable=not progress)
    computed: dict[str, tuple[list[torch.Tensor], float]] = {}
    resampled: list[str] = []
    with num_threads(1):  # many small transforms: extra threads only contend (20x slower)
        for split in SPLIT_NAMES:
            feats, seconds, changed = _featurize(corpus.splits[split], fe, bar)
            computed[split] = (feats, seconds)
            resampled += changed
    bar.close()
    if resampled:
        log.warning(
            "%d file(s) not at %d Hz were resampled (first: %s)",
            len(resampled),
            SAMPLE_RATE,
            resampled[0],
        )
    mean, std = _mean_std(computed["train"][0])
    base = {
        "corpus": corpus.name,
        "corpus_key": corpus.key,
        "sample_rate": SAMPLE_RATE,
        **feature_settings(fe),
        "train_mean": mean,
        "train_std": std,
    }
    out = {}
    for split in SPLIT_NAMES:
        utts = corpus.splits[split]
        feats, seconds = computed[split]
        meta = {**base, "split": split, "seconds": seconds}
        if split == "test":
            meta["unseen_voices"] = sorted({u.voice for u in utts if u.unseen})
            meta["unseen_ids"] = [u.id for u in utts if u.unseen]
        fs = FeatureSet.from_list(
            feats, [u.text for u in utts], [u.id for u in utts], [u.voice for u in utts], meta
        )
        fs.save(paths[split])
        out[split] = fs
    return out


def speech_features(cfg: SpeechConfig, *, progress: bool = True) -> dict[str, FeatureSet]:
    """Log-mel features (cfg.n_mels bands, 25 ms / 10 ms) of the configured corpus's splits.

    Returns:
        {"train", "dev", "test"} -> FeatureSet with spoken-form texts and voice names; the test
        set's `meta["unseen_voices"]` lists the voices never heard in training.
    """
    return corpus_features(
        speech_corpus(cfg, progress=progress), n_mels=cfg.n_mels, progress=progress
    )
