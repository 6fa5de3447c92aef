import math

import pytest
import torch

from prunekit.audio.augment import (
    Augmentation,
    add_noise,
    apply_augmentation,
    babble,
    coloured_noise,
    reverberate,
    speed_perturb,
    synthetic_rir,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _speechlike(n: int = 16000) -> torch.Tensor:
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * math.pi * 220 * t) * (1 + torch.sin(2 * math.pi * 3 * t))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_changes_length(factor):
    out = speed_perturb(_speechlike(), factor)
    assert out.shape[0] == pytest.approx(16000 / factor, abs=2)


@pytest.mark.parametrize("snr", [0.0, 5.0, 20.0])
def test_add_noise_hits_the_snr(snr):
    clean = _speechlike()
    noise = coloured_noise(5000, "pink", generator=_gen())  # looped to fit
    noisy = add_noise(clean, noise, snr)
    measured = 10 * torch.log10(clean.pow(2).mean() / (noisy - clean).pow(2).mean())
    assert float(measured) == pytest.approx(snr, abs=1e-3)


def test_noise_colours_have_their_slopes():
    n = 1 << 15
    low, high = {}, {}
    for colour in ("white", "pink", "brown"):
        x = coloured_noise(n, colour, generator=_gen(1))
        assert float(x.pow(2).mean()) == pytest.approx(1.0, rel=1e-4)
        power = torch.fft.rfft(x).abs().square()
        low[colour], high[colour] = power[20:200].mean(), power[-2000:].mean()
    ratio = {c: float(low[c] / high[c]) for c in low}
    assert ratio["white"] < 2 < 20 < ratio["pink"] < ratio["brown"]
    with pytest.raises(ValueError, match="noise colour 'green'"):
        coloured_noise(10, "green", generator=_gen())


def test_rir_decays_and_reverberation_keeps_length_and_level():
    rir = synthetic_rir(0.3, generator=_gen())
    assert rir.shape == (4800,) and rir[0] == 1.0
    assert rir[1:40].abs().max() == 0  # 2.5 ms gap before the tail
    early, late = rir[40:800].pow(2).sum(), rir[-800:].pow(2).sum()
    assert late < 1e-3 * early  # 60 dB down at rt60
    x = _speechlike()
    wet = reverberate(x, rir)
    assert wet.shape == x.shape
    assert float(wet.pow(2).mean()) == pytest.approx(float(x.pow(2).mean()), rel=1e-4)
    assert not torch.allclose(wet, x, atol=1e-3)


def test_babble_mixes_utterances_at_unit_rms():
    pool = [_speechlike(7000), 0.1 * _speechlike(3000)]
    b = babble(pool, 20000, generator=_gen())
    assert b.shape == (20000,) and float(b.pow(2).mean()) == pytest.approx(1.0, rel=1e-4)
    assert torch.count_nonzero(babble([], 10, generator=_gen())) == 0


def test_apply_augmentation_is_a_function_of_its_seed():
    x = _speechlike()
    aug = Augmentation(speed=1.1, noise="babble", snr_db=10.0, rt60=0.2, gain_db=-6.0, seed=7)
    pool = [_speechlike(5000)]
    a = apply_augmentation(x, aug, babble_pool=pool)
    b = apply_augmentation(x, aug, babble_pool=pool)
    c = apply_augmentation(x, Augmentation(**{**aug.__dict__, "seed": 8}), babble_pool=pool)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape[0] == pytest.approx(16000 / 1.1, abs=2)
    assert torch.equal(apply_augmentation(x, Augmentation()), x)
    loud = apply_augmentation(x, Augmentation(gain_db=20.0))
    assert float(loud.abs().max()) == pytest.approx(0.99)  # never clips
