import librosa
import numpy as np
import pytest
import torch

from prunekit.audio.features import LogMel, mel_filterbank


@pytest.mark.parametrize(
    ("rate", "n_fft", "n_mels", "fmin", "fmax"),
    [(16000, 512, 80, 20.0, None), (16000, 512, 32, 0.0, 8000.0), (22050, 1024, 64, 50.0, 7000.0)],
)
def test_mel_filterbank_matches_librosa(rate, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(rate, n_fft, n_mels, fmin, fmax).numpy()
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-7)  # librosa computes in float32


def test_logmel_matches_librosa_melspectrogram():
    wave = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1
    ours = LogMel()(wave)  # 80 mels, 25 ms / 10 ms at 16 kHz: frame t is wave[160 t : 160 t + 400]
    # librosa centres the 400-sample window in a 512-sample frame: shift the wave by 56 to match
    shifted = np.pad(wave.numpy(), (56, 56))
    power = librosa.feature.melspectrogram(
        y=shifted,
        sr=16000,
        n_fft=512,
        hop_length=160,
        win_length=400,
        window="hann",
        center=False,
        power=2.0,
        n_mels=80,
        fmin=20.0,
    )
    assert ours.shape == (98, 80) == power.T.shape
    np.testing.assert_allclose(ours.numpy(), np.log(power.T + 1e-6), atol=1e-4)


def test_frames_batches_and_short_waves():
    fe = LogMel(n_mels=32)
    assert (fe.win, fe.hop, fe.n_fft) == (400, 160, 512)
    assert [fe.num_frames(n) for n in (0, 399, 400, 559, 560, 16000)] == [1, 1, 1, 1, 2, 98]
    waves = torch.randn(3, 4000)
    batch = fe(waves)
    assert batch.shape == (3, fe.num_frames(4000), 32)
    assert torch.allclose(batch[2], fe(waves[2]), atol=1e-5)
    assert fe(torch.zeros(100)).shape == (1, 32)
    assert torch.allclose(fe(torch.zeros(400)), torch.full((1, 32), float(np.log(1e-6))))
    assert fe.state_dict() == {}  # nothing to load: the filterbank is rebuilt from the settings
