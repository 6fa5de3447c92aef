"""Schedules pinned to hand-computed tables: eq. 4 (cubic), eq. 5 (factorized), Narang's ramp."""

import json

import pytest

from prunekit.errors import PrunekitError
from prunekit.prune import (
    Cubic,
    NarangRamp,
    OneShot,
    PruneConfig,
    ScopeConfig,
    factorized_rank_fraction,
    schedule_from_dict,
)

# s_f=0.8, s_i=0, t0=10, dt=5, n=4: s = 0.8 (1 - (1 - u/4)^3) at update u.
CUBIC_TABLE = [
    (0, 0.0),
    (9, 0.0),
    (10, 0.0),
    (14, 0.0),
    (15, 0.8 * (1 - 0.75**3)),  # 0.4625
    (19, 0.4625),
    (20, 0.7),
    (25, 0.7875),
    (29, 0.7875),
    (30, 0.8),
    (1000, 0.8),
]


@pytest.mark.parametrize(("step", "value"), CUBIC_TABLE)
def test_cubic_matches_eq4_table(step, value):
    assert Cubic(s_f=0.8, t0=10, dt=5, n=4)(step) == pytest.approx(value, abs=1e-12)


def test_cubic_with_initial_sparsity():
    s = Cubic(s_i=0.2, s_f=0.6, t0=0, dt=10, n=2)
    # u=1: 0.6 + (0.2 - 0.6) * 0.5^3 = 0.55
    assert [s(t) for t in (0, 9, 10, 20, 99)] == pytest.approx([0.2, 0.2, 0.55, 0.6, 0.6])


def test_cubic_updates_and_last_step():
    s = Cubic(s_f=0.8, t0=10, dt=5, n=4)
    assert [t for t in range(50) if s.should_update(t)] == [10, 15, 20, 25, 30]
    assert s.last_step == 30


def test_one_shot():
    s = OneShot(sparsity=0.3, step=4)
    assert [s(t) for t in (0, 3, 4, 9)] == [0.0, 0.0, 0.3, 0.3]
    assert [t for t in range(10) if s.should_update(t)] == [4]
    assert s.last_step == 4


# start=100, ramp=300, end=500, freq=100, slope 1.5, q=0.2:
# theta = 2*0.2*100 / (2*200 + 3*200) = 0.04, phi = 0.06
NARANG_TABLE = [
    (200, 0.04 * 101 / 100),  # before ramp: 0.0404
    (300, (0.04 * 201 + 0.06 * 1) / 100),  # 0.081
    (400, (0.04 * 201 + 0.06 * 101) / 100),  # 0.141
]


@pytest.mark.parametrize(("step", "eps"), NARANG_TABLE)
def test_narang_threshold_table(step, eps):
    s = NarangRamp(start=100, ramp=300, end=500, freq=100, slope_mult=1.5)
    assert s.threshold(step, 0.2) == pytest.approx(eps, rel=1e-12)
    assert s(step) == pytest.approx(eps / 0.2, rel=1e-12)


def test_narang_pinned_numbers():
    s = NarangRamp(start=100, ramp=300, end=500, freq=100, slope_mult=1.5)
    assert [round(s.threshold(t, 0.2), 6) for t in (200, 300, 400)] == [0.0404, 0.081, 0.141]
    assert [t for t in range(600) if s.should_update(t)] == [200, 300, 400]
    assert s.last_step == 400
    assert s.threshold(50, 0.2) == 0.0


@pytest.mark.parametrize(
    ("s", "a", "b", "expected"),
    [
        (0.5, 512, 512, 0.75),  # 1 - 512 * 0.5 / 1024
        (0.9, 2048, 512, 0.92),  # 1 - 2048 * 0.1 / 2560
        (0.9, 512, 2048, 0.92),  # dimension order does not matter
        (0.0, 6300, 512, 512 / 6812),  # at s = 0 the full-rank SVD is already too big
    ],
)
def test_factorized_rank_fraction_eq5(s, a, b, expected):
    assert factorized_rank_fraction(s, a, b) == pytest.approx(expected, rel=1e-12)


def test_eq5_keeps_the_requested_parameter_count():
    a, b, s = 300, 100, 0.6
    k = (1 - factorized_rank_fraction(s, a, b)) * min(a, b)
    assert k * (a + b) == pytest.approx((1 - s) * a * b)


SCHEDULES = [
    OneShot(sparsity=0.5, step=3),
    Cubic(s_i=0.1, s_f=0.9, t0=5, dt=7, n=3),
    NarangRamp(start=10, ramp=30, end=60, freq=10, slope_mult=2.0, q_percentile=80.0),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_json_round_trip(schedule):
    d = json.loads(json.dumps(schedule.to_dict()))
    assert d["_type"] == type(schedule).__name__ and d["_version"] == 1
    assert type(schedule).from_dict(d) == schedule
    assert schedule_from_dict(d) == schedule


def test_prune_config_json_round_trip():
    c = PruneConfig(
        criterion="taylor",
        method="structured",
        method_args={"reduce": "max", "consumers": {"rnn": "lm_head"}},
        schedule=Cubic(s_f=0.5, dt=2, n=2),
        scope=ScopeConfig(exclude=["lm_head"], exclude_output=True),
        budget="global",
    )
    assert PruneConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_frozen():
    with pytest.raises(AttributeError):
        OneShot(sparsity=0.5).sparsity = 5.0  # type: ignore[misc]


ERRORS = [
    (
        lambda: Cubic(s_f=1.2, dt=1, n=1),
        "s_f=1.2 must be in [0, 1): it is the fraction of weights removed, e.g. s_f=0.9",
    ),
    (
        lambda: Cubic(s_i=0.5, s_f=0.3, dt=1, n=1),
        "s_i=0.5 must be <= s_f=0.3: sparsity only grows; lower s_i or raise s_f",
    ),
    (lambda: Cubic(s_f=0.5, dt=0, n=1), "dt=0 must be an integer >= 1: e.g. dt=100"),
    (lambda: Cubic(s_f=0.5, dt=1, n=0), "n=0 must be an integer >= 1: e.g. n=10"),
    (lambda: Cubic(s_f=0.5, t0=-1, dt=1, n=1), "t0=-1 must be an integer >= 0: e.g. t0=0"),
    (
        lambda: OneShot(sparsity=-0.1),
        "sparsity=-0.1 must be in [0, 1): it is the fraction of weights removed, e.g. sparsity=0.9",
    ),
    (
        lambda: OneShot(sparsity=True),
        "sparsity=True must be in [0, 1): it is the fraction of weights removed, e.g. sparsity=0.9",
    ),
    (lambda: NarangRamp(start=10, ramp=5, end=20), "ramp=5 must be an integer >= 10: e.g. ramp=10"),
    (
        lambda: NarangRamp(start=0, ramp=50, end=40, freq=10),
        "ramp=50 must be <= end=40: the ramp starts before pruning ends",
    ),
    (
        lambda: NarangRamp(start=10, ramp=10, end=10),
        "end=10 must be an integer >= 11: e.g. end=1010",
    ),
    (
        lambda: NarangRamp(start=0, ramp=5, end=10, slope_mult=0),
        "slope_mult=0 must be a number > 0: e.g. slope_mult=1.5",
    ),
    (
        lambda: NarangRamp(start=0, ramp=5, end=10, freq=1, q_percentile=0),
        "q_percentile=0 must be in (0, 100]: e.g. q_percentile=90",
    ),
    (
        lambda: NarangRamp(start=1, ramp=2, end=99, freq=100),
        "NarangRamp(start=1, end=99, freq=100) never updates: put a multiple of freq strictly between start and end",
    ),
    (lambda: factorized_rank_fraction(0.5, 0, 3), "a=0 must be an integer >= 1: e.g. a=512"),
    (
        lambda: OneShot.from_dict({"_type": "Cubic", "_version": 1, "_data": {}}),
        "_type='Cubic' is unknown here: expected one of OneShot",
    ),
    (
        lambda: OneShot.from_dict({"_type": "OneShot", "_version": 7, "_data": {}}),
        "OneShot _version=7 is not supported: this prunekit reads version 1; re-create the config with this version",
    ),
    (
        lambda: schedule_from_dict({"x": 1}),
        "expected a dict with keys _type, _version, _data, got {'x': 1}: pass what to_dict() returned",
    ),
]


@pytest.mark.parametrize(("make", "message"), ERRORS, ids=range(len(ERRORS)))
def test_schedule_errors(make, message):
    with pytest.raises(PrunekitError) as exc:
        make()
    assert str(exc.value) == message


# s_f=0.8, n=4, dt=1 with a stop at 0.5: the ramp's 0.4625, 0.7, 0.7875, 0.8 becomes
# 0.4625, 0.5 (the update that would pass 0.5 lands on it), then 0.7875 and 0.8 as before.
def test_cubic_lands_on_its_stops():
    s = Cubic(s_f=0.8, dt=1, n=4, stops=(0.5,))
    assert [s(t) for t in range(6)] == pytest.approx([0.0, 0.4625, 0.5, 0.7875, 0.8, 0.8])
    two = Cubic(s_f=0.8, dt=1, n=4, stops=[0.3, 0.45])  # both passed by the update to 0.4625
    assert [two(t) for t in range(5)] == pytest.approx([0.0, 0.3, 0.45, 0.7875, 0.8])
    assert Cubic.from_dict(json.loads(json.dumps(two.to_dict()))) == two
    assert Cubic.from_dict({**Cubic(s_f=0.8, dt=1, n=4).to_dict()}).stops == ()


@pytest.mark.parametrize(
    ("stops", "message"),
    [
        ((0.8,), "must lie strictly between s_i=0.0 and s_f=0.8"),
        ((0.1, 0.2, 0.3, 0.4), "n=4 updates cannot land on 4 stops and still end at s_f=0.8"),
    ],
)
def test_cubic_stops_are_checked(stops, message):
    with pytest.raises(PrunekitError, match=message):
        Cubic(s_f=0.8, dt=1, n=4, stops=stops)
