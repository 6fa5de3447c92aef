"""Decoding a speech set with an LM setting, and scoring it: the pieces `prunekit asr` and
`prunekit bench asr` share.

- `am_log_probs`: the acoustic model's CTC log-probs of every utterance (computed once per set
  and kept as a FeatureSet of (T'_i, V) rows, so every LM decodes the same acoustic scores), with
  the acoustic model's own seconds;
- `tune`: the fusion weights on dev (`decode.search`: full grid or coordinate search);
- `decode_system`: one decoding of the test set -> texts, WER / CER overall and for seen and
  unseen voices, timing (real-time factor, the LMs' share);
- `compare`: MAPSSWE of one system against another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prunekit.asr.batches import frame_batches, pad_features
from prunekit.asr.beam_search import BeamConfig, FusionParams
from prunekit.asr.decode import decode_all
from prunekit.asr.fusion import FusionGrid, FusionTuning, tune_fusion, tune_fusion_coordinate
from prunekit.asr.lm_scorer import WordLM
from prunekit.audio.featureset import FeatureSet
from prunekit.config.asr import DecodeSection
from prunekit.eval.mapsswe import mapsswe
from prunekit.eval.wer import char_error_rate, word_error_rate
from prunekit.export.timing import num_threads

GROUPS = ("all", "seen_voices", "unseen_voices")


@torch.no_grad()
def am_log_probs(
    model: nn.Module, fs: FeatureSet, *, max_frames: int = 24_000, threads: int = 1
) -> tuple[FeatureSet, float]:
    """CTC log-probs of every utterance of `fs` (batched by a frame budget) and the seconds it took.

    Returns:
        (a FeatureSet whose rows are the (T'_i, V) log-probs, with `fs`'s texts, ids, voices and
        meta plus "audio_seconds"; forward seconds at `threads` threads).
    """
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(fs)
    with num_threads(threads):
        started = time.perf_counter()
        for members in frame_batches(fs.lengths, max_frames):
            feats, lengths = pad_features(fs, members)
            log_probs, out_len = model(feats, lengths)  # (B, T', V), (B,)
            for j, i in enumerate(members):
                out[i] = log_probs[j, : int(out_len[j])].clone()
        seconds = time.perf_counter() - started
    secs = feature_seconds(fs)
    meta = {**fs.meta, "utterance_seconds": secs, "audio_seconds": sum(secs), "am_seconds": seconds}
    return FeatureSet.from_list(out, fs.texts, fs.ids, fs.voices, meta), seconds  # type: ignore[arg-type]


def feature_seconds(fs: FeatureSet) -> list[float]:
    """Seconds of audio per utterance of a feature set: frames x hop (10 ms by default)."""
    hop = fs.meta.get("hop", 160) / fs.meta.get("sample_rate", 16_000)
    return [int(n) * hop for n in fs.lengths.tolist()]


def durations(lp: FeatureSet) -> list[float]:
    """Seconds of audio per utterance of a log-prob set (from `am_log_probs`)."""
    return list(lp.meta["utterance_seconds"])


def rows(fs: FeatureSet, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
    """The (T'_i, V) log-prob rows of `fs` (all, or `indices`)."""
    return [fs[i] for i in (range(len(fs)) if indices is None else indices)]


def voice_groups(fs: FeatureSet, unseen: set[str]) -> dict[str, list[int]]:
    """Utterance indices of the whole set and of its seen / unseen voices."""
    return {
        "all": list(range(len(fs))),
        "seen_voices": [i for i, v in enumerate(fs.voices) if v not in unseen],
        "unseen_voices": [i for i, v in enumerate(fs.voices) if v in unseen],
    }


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, Any]:
    """WER and CER with their counts (`prunekit.eval.wer`)."""
    w = word_error_rate(refs, hyps).total
    c = char_error_rate(refs, hyps)
    return {
        "utterances": len(refs),
        "words": w.ref,
        "word_errors": w.errors,
        "wer": w.rate if refs else None,
        "chars": c.ref,
        "char_errors": c.errors,
        "cer": c.rate if refs else None,
        "sub": w.sub,
        "del": w.dele,
        "ins": w.ins,
    }


def grouped_rates(
    refs: Sequence[str], hyps: Sequence[str], groups: dict[str, list[int]]
) -> dict[str, Any]:
    """`error_rates` of each voice group."""
    return {
        name: error_rates([refs[i] for i in idx], [hyps[i] for i in idx])
        for name, idx in groups.items()
    }


def beam_config(cfg: DecodeSection) -> BeamConfig:
    return BeamConfig(
        beam_width=cfg.beam_width,
        token_min_logp=cfg.token_min_logp,
        beam_prune_logp=cfg.beam_prune_logp,
    )


def fusion_grid(cfg: DecodeSection) -> FusionGrid:
    return FusionGrid(
        lm_weight=tuple(cfg.lm_weight),
        ilm_weight=tuple(cfg.ilm_weight),
        word_bonus=tuple(cfg.word_bonus),
    )


def tune(
    dev: FeatureSet,
    cfg: DecodeSection,
    *,
    lm: WordLM,
    ilm: WordLM | None = None,
    start: FusionParams | None = None,
    on_utterance: Callable[[], Any] | None = None,
) -> tuple[FusionTuning, float]:
    """Fusion weights tuned on (the first `cfg.tune_utterances` of) `dev`; (result, seconds)."""
    n = cfg.tune_utterances or len(dev)
    idx = list(range(min(n, len(dev))))
    lps, refs = rows(dev, idx), [dev.texts[i] for i in idx]
    started = time.perf_counter()
    with num_threads(cfg.threads):
        if cfg.search == "grid":
            result = tune_fusion(
                lps, refs, lm=lm, ilm=ilm, grid=fusion_grid(cfg), config=beam_config(cfg),
                on_utterance=on_utterance,
            )  # fmt: skip
        else:
            result = tune_fusion_coordinate(
                lps, refs, lm=lm, ilm=ilm, grid=fusion_grid(cfg), start=start,
                config=beam_config(cfg), on_utterance=on_utterance,
            )  # fmt: skip
    return result, time.perf_counter() - started


def decode_system(
    test: FeatureSet,
    cfg: DecodeSection,
    groups: dict[str, list[int]],
    *,
    lm: WordLM | None = None,
    ilm: WordLM | None = None,
    params: FusionParams | None = None,
    on_utterance: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Decode `test` with one setting at `cfg.threads` threads; texts, rates by group, timing."""
    with num_threads(cfg.threads):
        out = decode_all(
            rows(test), durations(test), lm=lm, ilm=ilm, params=params, config=beam_config(cfg),
            on_utterance=on_utterance,
        )  # fmt: skip
    timing = out.timing.to_dict()
    am_seconds = float(test.meta.get("am_seconds", 0.0))
    audio = timing["audio_seconds"]
    timing.update(
        am_seconds=am_seconds,
        am_rtf=am_seconds / audio if audio else 0.0,
        total_rtf=(am_seconds + timing["decode_seconds"]) / audio if audio else 0.0,
        threads=cfg.threads,
    )
    return {
        "params": (params or FusionParams()).to_dict(),
        "rates": grouped_rates(test.texts, out.texts, groups),
        "timing": timing,
        "texts": out.texts,
    }


def compare(refs: Sequence[str], system: Sequence[str], baseline: Sequence[str]) -> dict[str, Any]:
    """MAPSSWE of `system` (1) against `baseline` (2) with both p-values and the error counts."""
    r = mapsswe(refs, system, baseline)
    return {**r.to_dict(), "significant": r.significant()}
