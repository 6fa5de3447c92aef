"""Greedy CTC decoding (best unit per frame, repeats merged, blanks dropped) and its WER / CER.

The decoder without a language model: what the acoustic model alone hears. Error rates come from
jiwer (word and character edit distances summed over the whole set, spaces counted as
characters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jiwer
import torch
from torch import nn

from prunekit.asr.batches import frame_batches, pad_features
from prunekit.asr.units import CharUnits
from prunekit.audio.featureset import FeatureSet


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    fs: FeatureSet,
    *,
    max_frames: int = 20_000,
    units: CharUnits | None = None,
) -> list[str]:
    """Transcribe every utterance of `fs` greedily, in batches of at most `max_frames` frames.

    Args:
        model: forward(feats (B, T, F), lengths (B,)) -> (log_probs (B, T', V), out_lengths (B,)).
        fs: the utterances.
        max_frames: padded input frames per batch.
        units: the model's output units.

    Returns:
        One hypothesis per utterance, in the order of `fs`.
    """
    units = units or CharUnits()
    was_training = model.training
    model.eval()
    hyps = [""] * len(fs)
    try:
        for members in frame_batches(fs.lengths, max_frames):
            feats, lengths = pad_features(fs, members)
            log_probs, out_len = model(feats, lengths)  # (B, T', V), (B,)
            best = log_probs.argmax(dim=-1)  # (B, T')
            for j, i in enumerate(members):
                hyps[i] = units.collapse(best[j, : int(out_len[j])].tolist())
    finally:
        model.train(was_training)
    return hyps


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, Any]:
    """Corpus WER and CER of `hyps` against `refs` (jiwer), with the counts behind them."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        return {"utterances": 0, "words": 0, "chars": 0, "wer": None, "cer": None}
    w = jiwer.process_words(list(refs), list(hyps))
    c = jiwer.process_characters(list(refs), list(hyps))
    words = w.hits + w.substitutions + w.deletions
    chars = c.hits + c.substitutions + c.deletions
    return {
        "utterances": len(refs),
        "words": words,
        "chars": chars,
        "word_errors": w.substitutions + w.deletions + w.insertions,
        "char_errors": c.substitutions + c.deletions + c.insertions,
        "wer": w.wer,
        "cer": c.cer,
    }


def greedy_error_rates(
    model: nn.Module, fs: FeatureSet, *, max_frames: int = 20_000
) -> tuple[dict[str, Any], list[str]]:
    """(WER/CER of greedy decoding over `fs`, the hypotheses)."""
    hyps = greedy_decode(model, fs, max_frames=max_frames)
    return error_rates(fs.texts, hyps), hyps
