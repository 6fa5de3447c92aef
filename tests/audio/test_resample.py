import math

import pytest
import torch

from prunekit.audio.resample import resample


def _sine(freq: float, rate: int, seconds: float = 2.0) -> torch.Tensor:
    t = torch.arange(round(rate * seconds), dtype=torch.float64) / rate
    return torch.sin(2 * math.pi * freq * t)


@pytest.mark.parametrize(
    ("orig", "new", "freq"),
    [(22050, 16000, 1000.0), (32000, 16000, 440.0), (44100, 16000, 6000.0), (8000, 16000, 3000.0)],
)
def test_passband_tone_survives(orig, new, freq):
    y = resample(_sine(freq, orig), orig, new).double()
    assert y.shape[0] == math.ceil(2.0 * new)
    ref = _sine(freq, new)[: y.shape[0]]
    mid = slice(new // 4, y.shape[0] - new // 4)  # away from the zero-padded edges
    assert (y[mid] - ref[mid]).abs().max() < 2e-3


@pytest.mark.parametrize("freq", [9000.0, 10500.0])
def test_tone_above_the_new_nyquist_is_removed(freq):
    y = resample(_sine(freq, 22050), 22050, 16000)
    mid = slice(4000, y.shape[0] - 4000)
    assert y[mid].abs().max() < 1e-3  # -60 dB: no aliasing back into the band


def test_same_rate_is_identity_and_batches_match_singles():
    x = torch.randn(2, 1000)
    assert torch.equal(resample(x, 16000, 16000), x)
    batch = resample(x, 44100, 16000)
    assert batch.shape == (2, math.ceil(1000 * 16000 / 44100))
    assert torch.allclose(batch[1], resample(x[1], 44100, 16000), atol=1e-6)


def test_bad_rate():
    with pytest.raises(ValueError, match="sample rates must be positive"):
        resample(torch.zeros(10), 0, 16000)
