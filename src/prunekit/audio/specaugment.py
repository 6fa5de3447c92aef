"""SpecAugment (Park et al. 2019): frequency and time masks on log-mel features, for training only.

Each of `freq_masks` masks covers f ~ U{0, ..., freq_width} consecutive mel channels starting at
f0 ~ U{0, ..., F - f}; each of `time_masks` masks covers t ~ U{0, ..., min(time_width,
floor(time_fraction * T))} consecutive frames starting at t0 ~ U{0, ..., T - t}. Masked cells get
`fill` (the training set's mean, i.e. zero after the model's normalization). Time warping, the
part the paper found least useful, is left out.

Randomness comes only from the `torch.Generator` passed in, so a caller that seeds it from
(run seed, epoch, batch, utterance) gets the same masks after a resume or under DDP.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor


class SpecAugment(BaseModel):
    """Frequency and time masking (a recipe section: `specaugment:`).

    Attributes:
        freq_masks: number of frequency masks (Park et al.'s F-count, "mF").
        freq_width: largest width of a frequency mask in mel channels (their F).
        time_masks: number of time masks ("mT").
        time_width: largest width of a time mask in frames (their T).
        time_fraction: a time mask covers at most this fraction of the utterance (their p).

    Example:
        >>> aug = SpecAugment(freq_masks=1, freq_width=3, time_masks=1, time_width=5)
        >>> out = aug(torch.ones(50, 8), torch.Generator().manual_seed(0), fill=torch.zeros(8))
        >>> out.shape, bool((out == 0).any())
        (torch.Size([50, 8]), True)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    freq_masks: int = Field(2, ge=0)
    freq_width: int = Field(15, ge=0)
    time_masks: int = Field(2, ge=0)
    time_width: int = Field(40, ge=0)
    time_fraction: float = Field(0.2, ge=0, le=1)

    def masks(
        self, n_frames: int, n_mels: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Draw the masks of one utterance: (time (T,) bool, freq (F,) bool), True = masked."""
        time = torch.zeros(n_frames, dtype=torch.bool)
        freq = torch.zeros(n_mels, dtype=torch.bool)
        for _ in range(self.freq_masks):
            _span(freq, min(self.freq_width, n_mels), generator)
        widest = min(self.time_width, int(self.time_fraction * n_frames))
        for _ in range(self.time_masks):
            _span(time, widest, generator)
        return time, freq

    def __call__(self, feats: Tensor, generator: torch.Generator, fill: Tensor | float) -> Tensor:
        """Return a masked copy of one utterance's features.

        Args:
            feats (Tensor[T, F]): log-mel features.
            generator: the only source of randomness.
            fill (Tensor[F] or float): value of masked cells.
        """
        time, freq = self.masks(feats.shape[0], feats.shape[1], generator)
        hit = time[:, None] | freq[None, :]  # (T, F)
        fill = torch.as_tensor(fill, dtype=feats.dtype).expand_as(feats)
        return torch.where(hit, fill, feats)


def _span(mask: Tensor, widest: int, generator: torch.Generator) -> None:
    """Set a random run of 0..widest consecutive entries of `mask` (in place)."""
    width = int(torch.randint(0, widest + 1, (1,), generator=generator))
    start = int(torch.randint(0, mask.numel() - width + 1, (1,), generator=generator))
    mask[start : start + width] = True
