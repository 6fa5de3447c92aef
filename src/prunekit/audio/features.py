"""Log-mel filterbank features (seed 004: 80 mels, 25 ms window, 10 ms shift) with torch.stft.

The mel filterbank follows librosa's default (Slaney's mel scale, area-normalized triangles), and
the tests compare it with `librosa.filters.mel`. Frames are not centred (Kaldi's snip-edges):
a wave of T samples gives 1 + (T - win) // hop frames (one frame if T < win).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_F_SP = 200.0 / 3  # Slaney mel scale: linear below 1 kHz (Hz per mel) ...
_MIN_LOG_HZ, _MIN_LOG_MEL = 1000.0, 15.0
_LOGSTEP = math.log(6.4) / 27.0  # ... and logarithmic above


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (librosa's `htk=False`)."""
    lin = hz / _F_SP
    log = _MIN_LOG_MEL + torch.log(hz.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of `hz_to_mel`."""
    lin = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, lin)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular mel filters, area-normalized (librosa.filters.mel's defaults).

    Returns:
        (n_mels, n_fft // 2 + 1) float64 weights.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = hz_to_mel(torch.tensor(fmin, dtype=torch.float64)), hz_to_mel(torch.tensor(fmax))
    edges = mel_to_hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64))
    width = edges.diff()  # (n_mels + 1,)
    ramps = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, F)
    rising = -ramps[:-2] / width[:-1, None]  # (n_mels, F)
    falling = ramps[2:] / width[1:, None]
    weights = torch.minimum(rising, falling).clamp(min=0.0)
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


class LogMel(nn.Module):
    """Waveform -> log mel-filterbank energies.

    Args:
        n_mels: number of mel bands (80 for ASR, 32 for keyword spotting).
        win_ms: analysis window (Hann) in milliseconds.
        hop_ms: frame shift in milliseconds.
        sample_rate: rate of the input waves in Hz.
        fmin, fmax: frequency range of the filterbank (fmax None = Nyquist).
        eps: added to the mel energies before the log (floor of silence: log(eps)).

    Example:
        >>> LogMel()(torch.zeros(16000)).shape
        torch.Size([98, 80])
    """

    def __init__(
        self,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        sample_rate: int = 16000,
        fmin: float = 20.0,
        fmax: float | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.n_mels, self.sample_rate, self.eps = n_mels, sample_rate, eps
        self.fmin, self.fmax = fmin, sample_rate / 2 if fmax is None else fmax
        self.win = round(win_ms * sample_rate / 1000)
        self.hop = round(hop_ms * sample_rate / 1000)
        self.n_fft = 1 << (self.win - 1).bit_length()
        fb = mel_filterbank(sample_rate, self.n_fft, n_mels, fmin, fmax)
        self.register_buffer("fb", fb.T.to(torch.float32), persistent=False)  # (F, n_mels)
        window = torch.hann_window(self.win, periodic=True)
        self.register_buffer("window", window, persistent=False)

    def num_frames(self, n_samples: int) -> int:
        """Frames produced for a wave of `n_samples` samples."""
        return 1 + (max(n_samples, self.win) - self.win) // self.hop

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(T,) -> (frames, n_mels), or (B, T) -> (B, frames, n_mels)."""
        single = wave.dim() == 1
        x = wave.reshape(-1, wave.shape[-1]).to(torch.float32)  # (B, T)
        if x.shape[-1] < self.win:
            x = nn.functional.pad(x, (0, self.win - x.shape[-1]))
        side = (self.n_fft - self.win) // 2  # stft centres the window in n_fft: frame t then
        x = nn.functional.pad(x, (side, self.n_fft - self.win - side))  # holds x[t*hop : t*hop+win]
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.win,
            window=self.window,
            center=False,
            return_complex=True,
        )  # (B, F, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(1, 2), self.fb)  # (B, frames, n_mels)
        out = torch.log(mel + self.eps)
        return out[0] if single else out
