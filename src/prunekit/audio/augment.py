"""Waveform augmentation: speed perturbation, additive noise at a given SNR, light reverberation.

Each function takes and returns (T,) float32 waveforms and draws its randomness from an explicit
`torch.Generator`, so an augmented utterance is a pure function of its inputs and seed. Noise
sources that exist offline: coloured noise (white, pink, brown) made here, and babble made by
summing other utterances (`babble`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from prunekit.audio.resample import resample

NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
"""Noise colour -> exponent a of its power spectrum 1 / f^a."""


def speed_perturb(wave: torch.Tensor, factor: float) -> torch.Tensor:
    """Play `wave` `factor` times faster (tempo and pitch both change, as Kaldi's sox `speed`).

    Args:
        wave: (T,) waveform.
        factor: speed, e.g. 0.9 or 1.1; approximated by a fraction with denominator <= 32.

    Returns:
        (about T / factor,) waveform.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    ratio = Fraction(factor).limit_denominator(32)
    if ratio == 1:
        return wave
    return resample(wave, ratio.numerator, ratio.denominator)


def coloured_noise(n: int, colour: str = "white", *, generator: torch.Generator) -> torch.Tensor:
    """(n,) Gaussian noise with a 1 / f^a power spectrum (`NOISE_COLOURS`), unit RMS."""
    if colour not in NOISE_COLOURS:
        raise ValueError(f"noise colour {colour!r} is not one of {sorted(NOISE_COLOURS)}")
    white = torch.randn(n, generator=generator)
    a = NOISE_COLOURS[colour]
    if a > 0:
        spectrum = torch.fft.rfft(white)  # (n // 2 + 1,)
        f = torch.arange(spectrum.shape[0], dtype=torch.float32).clamp(min=1.0)
        white = torch.fft.irfft(spectrum / f ** (a / 2), n=n)
    white = white - white.mean()
    return white / white.pow(2).mean().sqrt().clamp(min=1e-12)


def babble(
    waves: list[torch.Tensor], n: int, *, talkers: int = 4, generator: torch.Generator
) -> torch.Tensor:
    """(n,) babble: `talkers` random utterances from `waves`, each looped and randomly shifted, summed.

    Returns unit-RMS noise (zeros if `waves` is empty or silent).
    """
    out = torch.zeros(n)
    if not waves:
        return out
    for _ in range(talkers):
        w = waves[int(torch.randint(len(waves), (1,), generator=generator))]
        w = w / w.pow(2).mean().sqrt().clamp(min=1e-12)
        reps = math.ceil((n + w.shape[0]) / w.shape[0])
        start = int(torch.randint(w.shape[0], (1,), generator=generator))
        out += w.repeat(reps)[start : start + n]
    return out / out.pow(2).mean().sqrt().clamp(min=1e-12)


def add_noise(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Add `noise` scaled so that 10 log10(P_wave / P_noise) = `snr_db` (noise looped or cut to fit).

    Args:
        wave: (T,) clean waveform.
        noise: (N,) noise of any length > 0.
        snr_db: signal-to-noise ratio in dB.

    Returns:
        (T,) noisy waveform.
    """
    reps = math.ceil(wave.shape[0] / noise.shape[0])
    noise = noise.repeat(reps)[: wave.shape[0]]
    p_wave = wave.pow(2).mean()
    p_noise = noise.pow(2).mean().clamp(min=1e-20)
    scale = torch.sqrt(p_wave / (p_noise * 10 ** (snr_db / 10)))
    return wave + scale * noise


def synthetic_rir(
    rt60: float, *, sample_rate: int = 16000, generator: torch.Generator
) -> torch.Tensor:
    """A room impulse response: a direct path, then exponentially decaying noise (60 dB in `rt60`).

    The reverberant tail starts 2.5 ms after the direct path and holds about as much energy as
    the direct path for rt60 = 0.3 s (more for longer rt60).

    Returns:
        (round(rt60 * sample_rate),) impulse response with h[0] = 1.
    """
    n = max(2, round(rt60 * sample_rate))
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    tail = torch.randn(n, generator=generator) * torch.exp(-6.908 * t / rt60)  # ln(1000) = 6.908
    tail[: round(0.0025 * sample_rate)] = 0.0
    tail = tail / tail.pow(2).sum().sqrt().clamp(min=1e-12) * math.sqrt(rt60 / 0.3)
    tail[0] = 1.0
    return tail


def reverberate(wave: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve `wave` (T,) with `rir` (K,) by FFT; keep the first T samples at the input's RMS."""
    n = wave.shape[0] + rir.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    wet = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(rir, size), size)
    wet = wet[: wave.shape[0]]
    return wet * wave.pow(2).mean().sqrt() / wet.pow(2).mean().sqrt().clamp(min=1e-12)


@dataclass(frozen=True)
class Augmentation:
    """What to do to one utterance; all fields are plain values, so a plan is JSON.

    Attributes:
        speed: speed perturbation factor (1.0 = none).
        noise: "", "white", "pink", "brown" or "babble".
        snr_db: signal-to-noise ratio of the added noise.
        rt60: reverberation time in seconds (0 = no reverberation).
        gain_db: level change applied last (the peak is kept below 1).
        seed: seed of the noise and room draws.
    """

    speed: float = 1.0
    noise: str = ""
    snr_db: float = 0.0
    rt60: float = 0.0
    gain_db: float = 0.0
    seed: int = 0


def apply_augmentation(
    wave: torch.Tensor,
    aug: Augmentation,
    *,
    babble_pool: list[torch.Tensor] | None = None,
    sample_rate: int = 16000,
) -> torch.Tensor:
    """Speed, then reverberation, then noise, then gain: (T,) -> (about T / speed,)."""
    g = torch.Generator().manual_seed(aug.seed)
    out = speed_perturb(wave, aug.speed)
    if aug.rt60 > 0:
        out = reverberate(out, synthetic_rir(aug.rt60, sample_rate=sample_rate, generator=g))
    if aug.noise == "babble":
        out = add_noise(out, babble(babble_pool or [], out.shape[0], generator=g), aug.snr_db)
    elif aug.noise:
        out = add_noise(out, coloured_noise(out.shape[0], aug.noise, generator=g), aug.snr_db)
    out = out * 10 ** (aug.gain_db / 20)
    peak = out.abs().max()
    return out * (0.99 / peak) if peak > 0.99 else out
