"""A synthetic keyword-spotting-shaped task (not speech): the class is a temporal pattern.

Each clip is `frames` x `n_mels` Gaussian noise with two bursts of energy, in band a and then, a
few frames later, in band b. The class is the ordered pair (a, b) of distinct bands, so classes
(a, b) and (b, a) light up the same bands and differ only in their order: a bag-of-frames model
cannot tell them apart, a recurrent one must remember which band came first. Onsets, gaps and
burst widths vary from clip to clip. With 4 bands there are 12 classes, as in Google-12.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from prunekit.errors import PrunekitError


def pattern_classes(n_bands: int) -> list[tuple[int, int]]:
    """The ordered pairs of distinct bands, one per class."""
    return list(itertools.permutations(range(n_bands), 2))


def pattern_clips(
    n: int,
    *,
    n_bands: int = 4,
    frames: int = 99,
    n_mels: int = 32,
    noise: float = 0.5,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Draw n clips (n, frames, n_mels) float32 and their labels (n,) int64, balanced over classes.

    Raises:
        PrunekitError: too few frames or mel channels for the bands and bursts.
    """
    if frames < 24 or n_mels < 2 * n_bands:
        raise PrunekitError(
            f"pattern_clips needs frames >= 24 and n_mels >= {2 * n_bands} (got {frames}, "
            f"{n_mels}): use larger clips"
        )
    gen = torch.Generator().manual_seed(seed)
    classes = pattern_classes(n_bands)
    y = torch.arange(n) % len(classes)
    y = y[torch.randperm(n, generator=gen)]
    x = noise * torch.randn(n, frames, n_mels, generator=gen)
    band = n_mels // n_bands
    for i in range(n):
        a, b = classes[int(y[i])]
        width = int(torch.randint(3, 7, (1,), generator=gen))
        gap = int(torch.randint(2, frames // 4, (1,), generator=gen))
        latest = frames - 2 * width - gap
        t0 = int(torch.randint(0, max(1, latest), (1,), generator=gen))
        t1 = t0 + width + gap
        x[i, t0 : t0 + width, a * band : (a + 1) * band] += 2.0
        x[i, t1 : t1 + width, b * band : (b + 1) * band] += 2.0
    return x, y
