import pytest
import torch
from pydantic import ValidationError

from prunekit.audio.specaugment import SpecAugment


def _runs(mask: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool mask."""
    runs, n = [], 0
    for v in mask.tolist() + [False]:
        if v:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def test_masks_respect_their_bounds_and_reach_them():
    aug = SpecAugment(freq_masks=1, freq_width=7, time_masks=1, time_width=30, time_fraction=0.2)
    widest_f, widest_t = 0, 0
    for seed in range(300):
        time, freq = aug.masks(100, 40, torch.Generator().manual_seed(seed))
        assert int(freq.sum()) <= 7 and int(time.sum()) <= 20  # p * T = 20 < time_width
        assert len(_runs(freq)) <= 1 and len(_runs(time)) <= 1  # one contiguous mask each
        widest_f, widest_t = max(widest_f, int(freq.sum())), max(widest_t, int(time.sum()))
    assert widest_f == 7 and widest_t == 20


def test_time_width_bounds_long_utterances():
    aug = SpecAugment(freq_masks=0, time_masks=1, time_width=10, time_fraction=1.0)
    sizes = [int(aug.masks(1000, 8, torch.Generator().manual_seed(s))[0].sum()) for s in range(200)]
    assert max(sizes) == 10


def test_masked_cells_take_the_fill_and_the_rest_is_unchanged():
    aug = SpecAugment(freq_masks=2, freq_width=4, time_masks=2, time_width=10)
    x = torch.randn(60, 16)
    fill = torch.arange(16.0) + 100
    out = aug(x, torch.Generator().manual_seed(3), fill=fill)
    time, freq = aug.masks(60, 16, torch.Generator().manual_seed(3))
    hit = time[:, None] | freq[None, :]
    assert bool(hit.any())
    assert torch.equal(out[~hit], x[~hit])
    assert torch.equal(out[hit], fill.expand(60, 16)[hit])
    assert not torch.equal(out, x)


def test_the_generator_is_the_only_randomness():
    aug = SpecAugment()
    x = torch.randn(200, 80)
    a = aug(x, torch.Generator().manual_seed(5), fill=0.0)
    torch.manual_seed(123)  # global RNG state must not matter
    b = aug(x, torch.Generator().manual_seed(5), fill=0.0)
    c = aug(x, torch.Generator().manual_seed(6), fill=0.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_masks_is_the_identity():
    aug = SpecAugment(freq_masks=0, time_masks=0)
    x = torch.randn(30, 8)
    assert torch.equal(aug(x, torch.Generator().manual_seed(0), fill=0.0), x)


def test_bad_values_are_refused():
    with pytest.raises(ValidationError):
        SpecAugment(time_fraction=1.5)
    with pytest.raises(ValidationError):
        SpecAugment(freq_masks=-1)
    with pytest.raises(ValidationError):
        SpecAugment(time_warp=5)
