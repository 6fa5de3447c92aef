"""Band-limited resampling in torch: a polyphase windowed-sinc filter (no torchaudio needed).

For a rate change orig -> new (reduced by their gcd to o -> n), output sample j sits at input
time j * o / n. Its value is a sum of input samples weighted by a Kaiser-windowed sinc low-pass
cut just below the lower of the two Nyquist frequencies. The weights repeat every n outputs, so
one conv1d with n kernels and stride o computes them all (the method of torchaudio's
`functional.resample`, written here with a Kaiser window).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

ZEROS = 16
"""Half-width of the sinc filter in zero crossings of the lower rate: sharper with more."""

ROLLOFF = 0.945
"""Cut-off as a fraction of the lower Nyquist frequency (leaves room for the transition band)."""

BETA = 8.6
"""Kaiser window shape: about 80 dB stop-band attenuation."""


@lru_cache(maxsize=16)
def _kernels(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """(new, 1, K) polyphase filters for a reduced ratio orig -> new, and the half-width in inputs."""
    cutoff = min(orig, new) * ROLLOFF  # in units where the input rate is `orig`
    width = math.ceil(ZEROS * orig / cutoff)  # half-width in input samples
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, :] / orig  # (1, K)
    phase = -torch.arange(new, dtype=torch.float64)[:, None] / new  # (new, 1)
    t = (phase + idx) * cutoff  # (new, K) time in zero crossings of the cut-off
    window = torch.special.i0(BETA * torch.sqrt((1 - (t / ZEROS) ** 2).clamp(min=0)))
    window = window / torch.special.i0(torch.tensor(BETA, dtype=torch.float64))
    window = torch.where(t.abs() <= ZEROS, window, torch.zeros_like(window))
    sinc = torch.sinc(t)  # sin(pi t) / (pi t), 1 at t = 0
    kernels = sinc * window * (cutoff / orig)  # (new, K)
    return kernels.to(torch.float32)[:, None, :], width


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample `wave` from `orig_sr` to `new_sr` Hz.

    Args:
        wave: (T,) or (B, T) float waveform.
        orig_sr: its sample rate.
        new_sr: the wanted sample rate.

    Returns:
        (ceil(T * new_sr / orig_sr),) or (B, that) float32 waveform.

    Example:
        >>> resample(torch.zeros(22050), 22050, 16000).shape
        torch.Size([16000])
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return wave.to(torch.float32)
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    kernels, width = _kernels(orig, new)
    x = wave.to(torch.float32).reshape(-1, 1, wave.shape[-1])  # (B, 1, T)
    length = x.shape[-1]
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x, kernels, stride=orig)  # (B, new, L)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)  # (B, new * L)
    target = math.ceil(new * length / orig)
    return y[:, :target].reshape(*wave.shape[:-1], target)
