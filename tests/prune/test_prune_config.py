"""PruneConfig and method validation: every message, checked exactly."""

import json

import pytest

from prunekit.errors import PrunekitError
from prunekit.prune import (
    Cubic,
    NarangRamp,
    OneShot,
    PruneConfig,
    ScopeConfig,
    make_method,
    method_names,
)

ONE = OneShot(sparsity=0.5)
NARANG = NarangRamp(start=0, ramp=100, end=300)

ERRORS = [
    (
        {"method": "lowrank"},
        "method='lowrank' is unknown: choose one of 'factorized', 'structured', 'unstructured' "
        "(or add one with @register_method)",
    ),
    (
        {"method": "structured", "method_args": {"reduction": "mean"}},
        "method_args has 'reduction', which method='structured' does not take: allowed: reduce, "
        "granularity, consumers",
    ),
    (
        {"method": "unstructured", "method_args": {"reduce": "mean"}},
        "method_args has 'reduce', which method='unstructured' does not take: allowed: none",
    ),
    (
        {"method": "structured", "method_args": {"reduce": "median"}},
        "method_args reduce='median' is not supported: choose 'mean', 'min' or 'max'",
    ),
    (
        {"method": "structured", "method_args": {"granularity": "heads"}},
        "method_args granularity='heads' is not supported: choose 'auto', 'rows' or 'cols'",
    ),
    (
        {"method": "structured", "method_args": {"consumers": ["lm_head"]}},
        "method_args consumers=['lm_head'] must map module names (an RNN, conv or embedding) to "
        "the module reading it, "
        "e.g. {'rnn': 'lm_head'}",
    ),
    (
        {"method": "factorized", "method_args": {"embeddings": "yes"}},
        "method_args embeddings='yes' must be true or false",
    ),
    ({"method_args": ["x"]}, "method_args=['x'] must be a dict, e.g. {'reduce': 'mean'}"),
    ({"budget": "model"}, "budget='model' is not supported: choose 'layer' or 'global'"),
    (
        {"criterion": "wanda"},
        "criterion='wanda' is unknown: choose one of 'activation', 'magnitude', 'taylor' "
        "(or add one with @register_criterion)",
    ),
    (
        {"schedule": 0.5},
        "schedule=0.5 must be OneShot(...), Cubic(...), NarangRamp(...) or IHT(...) (or what their "
        "to_dict() returns)",
    ),
    ({"scope": "all"}, "scope='all' must be a ScopeConfig or a dict of its fields"),
    (
        {"scope": {"includes": ["x"]}},
        "bad scope fields ['includes']: ScopeConfig.__init__() got an unexpected keyword argument "
        "'includes'",
    ),
    (
        {"schedule": NARANG, "criterion": "taylor"},
        "schedule=NarangRamp thresholds |w| per tensor, so it needs criterion='magnitude', "
        "method='unstructured', budget='layer' (got 'taylor', 'unstructured', 'layer'): change "
        "them or use schedule=Cubic",
    ),
    (
        {"schedule": NARANG, "budget": "global"},
        "schedule=NarangRamp thresholds |w| per tensor, so it needs criterion='magnitude', "
        "method='unstructured', budget='layer' (got 'magnitude', 'unstructured', 'global'): "
        "change them or use schedule=Cubic",
    ),
]


@pytest.mark.parametrize(("kw", "message"), ERRORS, ids=range(len(ERRORS)))
def test_config_errors(kw, message):
    kw = {"schedule": ONE, **kw}
    with pytest.raises(PrunekitError) as exc:
        PruneConfig(**kw)
    assert str(exc.value) == message


def test_config_accepts_dicts_from_yaml():
    c = PruneConfig(
        schedule=Cubic(s_f=0.5, dt=10, n=3).to_dict(),
        scope={"exclude": ["lm_head"], "exclude_output": False},
    )
    assert c.schedule == Cubic(s_f=0.5, dt=10, n=3)
    assert c.scope == ScopeConfig(exclude=("lm_head",))


def test_config_from_dict_errors():
    with pytest.raises(PrunekitError) as exc:
        PruneConfig.from_dict({"_type": "PruneConfig", "_version": 1, "_data": {"sparsity": 1}})
    assert str(exc.value) == (
        "bad PruneConfig fields ['sparsity']: PruneConfig.__init__() got an unexpected keyword "
        "argument 'sparsity'"
    )


def test_every_method_config_round_trips():
    configs = [PruneConfig(method=m, schedule=ONE) for m in method_names()]
    configs.append(
        PruneConfig(method="structured", method_args={"granularity": "cols"}, schedule=ONE)
    )
    configs.append(PruneConfig(schedule=NARANG))
    for c in configs:
        assert PruneConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
        assert make_method(c.method, c.method_args).name == c.method
