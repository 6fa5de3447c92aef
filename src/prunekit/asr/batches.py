"""Batches of utterances by a frame budget: sort by length, cut into chunks, pad.

Sorting first keeps utterances of similar length together, so little of a batch is padding; the
budget counts padded frames (utterances x longest), which is what a batch costs to run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prunekit.audio.featureset import FeatureSet
from prunekit.errors import PrunekitError


def frame_batches(lengths: Tensor, max_frames: int, min_batch: int = 1) -> list[list[int]]:
    """Group utterance indices into batches of at most `max_frames` padded frames.

    Args:
        lengths (Tensor[N]): frames per utterance.
        max_frames: budget per batch: len(batch) * max(lengths in batch) <= max_frames, except
            where that would leave fewer than `min_batch` utterances in a batch.
        min_batch: utterances a batch holds at least (when the set has that many), e.g. one per
            DDP process.

    Returns:
        Batches of indices, shortest utterances first (ties by index), each sorted by length.

    Raises:
        PrunekitError: an utterance longer than `max_frames` on its own.

    Example:
        >>> frame_batches(torch.tensor([5, 3, 4, 9]), max_frames=10)
        [[1, 2], [0], [3]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (int(lengths[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        n = int(lengths[i])
        if n > max_frames:
            raise PrunekitError(
                f"utterance {i} has {n} frames, more than the batch budget max_frames="
                f"{max_frames}: raise max_frames to at least {n}"
            )
        if len(current) >= min_batch and (len(current) + 1) * n > max_frames:
            batches.append(current)
            current = []
        current.append(i)
    if batches and len(current) < min_batch:
        batches[-1].extend(current)
    elif current:
        batches.append(current)
    return batches


def pad_features(fs: FeatureSet, indices: list[int]) -> tuple[Tensor, Tensor]:
    """Zero-padded features (B, T_max, F) and lengths (B,) of utterances `indices` of `fs`."""
    return pad_list([fs[i] for i in indices])


def pad_list(feats: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack (T_i, F) matrices into zero-padded (B, T_max, F) and their lengths (B,)."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
    out = feats[0].new_zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for j, f in enumerate(feats):
        out[j, : f.shape[0]] = f
    return out, lengths
