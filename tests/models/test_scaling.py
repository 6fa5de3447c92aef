import pytest

from prunekit.errors import PrunekitError
from prunekit.eval.size import param_count
from prunekit.models import build_model
from prunekit.models.scaling import scaled_config

BASE = {
    "arch": "transformer",
    "vocab_size": 300,
    "d_model": 64,
    "n_layer": 2,
    "n_head": 4,
    "d_ff": 256,
}


@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_scaled_transformer_hits_the_budget_from_below(fraction):
    full = param_count(build_model(BASE))
    cfg = scaled_config(BASE, int(full * fraction))
    got = param_count(build_model(cfg))
    assert got <= full * fraction
    assert got > full * fraction * 0.85
    assert cfg["n_layer"] == 2 and cfg["d_model"] % 4 == 0 and cfg["vocab_size"] == 300


def test_scaled_rnn():
    base = {"arch": "rnn", "vocab_size": 300, "d_embed": 64, "d_hidden": 64, "n_layer": 2}
    full = param_count(build_model(base))
    cfg = scaled_config(base, full // 2)
    assert full // 2 * 0.8 < param_count(build_model(cfg)) <= full // 2


def test_unreachable_target():
    with pytest.raises(PrunekitError, match="is below the smallest transformer"):
        scaled_config(BASE, 10)
