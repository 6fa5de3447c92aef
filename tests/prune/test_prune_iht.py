"""The IHT schedule (LSQ stage 2): projections every k steps, masks reopened before each one so the
support can change, frozen support afterwards; pinned to hand-computed values."""

import json

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.prune import IHT, PruneConfig, Pruner, schedule_from_dict


def test_projection_steps_and_targets():
    s = IHT(density=0.3, start=10, end=40, every=15)
    assert [t for t in range(60) if s.should_update(t)] == [15, 30]  # multiples of 15 in [10, 40)
    assert [t for t in range(60) if s.opens_after(t)] == [
        29
    ]  # before every projection but the first
    assert s.last_step == 30
    assert (s(14), s(15), s(100)) == (0.0, pytest.approx(0.7), pytest.approx(0.7))


def test_thirds_is_edgemls_split():
    s = IHT.thirds(0.25, 300, every=15)
    assert (s.start, s.end, s.every, s.density) == (100, 200, 15, 0.25)
    assert [t for t in range(300) if s.should_update(t)][:2] == [105, 120]


def test_round_trip_and_bad_values():
    s = IHT(density=0.3, start=0, end=9, every=3)
    assert schedule_from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(PrunekitError) as err:
        IHT(density=0.0, start=0, end=9)
    assert str(err.value) == (
        "density=0.0 must be in (0, 1]: it is the fraction of weights KEPT (the paper's s), "
        "e.g. density=0.3"
    )
    with pytest.raises(
        PrunekitError, match=r"never projects: put a multiple of every in \[start, end\)"
    ):
        IHT(density=0.5, start=1, end=3, every=5)


def _run(weights, grads_at, schedule, steps):
    """SGD(lr=1) on a bias-free Linear(4, 1), gradients set by hand per step; returns masks."""
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([weights]))
    pruner = Pruner(lin, PruneConfig(schedule=schedule)).attach()
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    pruner.add_optimizer(opt)
    masks = []
    for t in range(steps):
        g = torch.tensor([grads_at.get(t, [0.0] * 4)])
        opt.zero_grad()
        (lin.weight * g).sum().backward()  # d/dW = g through the mask
        opt.step()
        masks.append(pruner.masks()["weight"].tolist()[0])
    return lin, masks


def test_support_changes_at_a_projection():
    """Keep 2 of [4, 3, 2, 1]; at the 2nd projection a dense step pushes entry 3 to 10."""
    schedule = IHT(density=0.5, start=0, end=5, every=2)  # projections at 0, 2, 4
    grads = {2: [0.0, 0.0, 0.0, -10.0]}  # a gradient step on a pruned weight at step 2
    lin, masks = _run([4.0, 3.0, 2.0, 1.0], grads, schedule, 6)
    assert masks[0] == [True, True, False, False]  # first projection
    assert masks[1] == [True, True, True, True]  # reopened before step 2 (weights 2, 1 still 0)
    assert masks[2] == [True, False, False, True]  # |10| beats |3|: the support moved
    assert masks[5] == masks[4] == [True, False, False, True]  # frozen after the last one
    assert lin.weight.tolist() == [[4.0, 0.0, 0.0, 10.0]]


def test_masked_steps_keep_the_support_fixed():
    """Between projections a gradient on a pruned weight does nothing (support fixed)."""
    schedule = IHT(density=0.5, start=0, end=5, every=4)  # projections at 0, 4
    grads = {1: [0.0, 0.0, -10.0, 0.0], 2: [0.0, 0.0, -10.0, 0.0]}
    lin, masks = _run([4.0, 3.0, 2.0, 1.0], grads, schedule, 5)
    assert masks[1] == masks[2] == [True, True, False, False]
    assert masks[4] == [True, True, False, False]
    assert lin.weight.tolist() == [[4.0, 3.0, 0.0, 0.0]]


def test_reopened_masks_do_not_change_the_forward_pass():
    torch.manual_seed(0)
    lin = nn.Linear(8, 8)
    pruner = Pruner(lin, PruneConfig(schedule=IHT(density=0.25, start=0, end=9, every=3))).attach()
    x = torch.randn(2, 8)
    pruner.step(0)
    before = lin(x)
    pruner.step(1)
    pruner.step(2)  # opens: 3 is a projection
    assert bool(pruner.masks()["weight"].all())
    assert torch.equal(lin(x), before)
