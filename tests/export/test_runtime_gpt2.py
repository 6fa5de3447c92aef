"""FastGPT2Decoder: Hugging Face GPT-2 (dense, fastest_dense, compact) decoded by one
TorchScript step per token, with the logits of the model's own cached decoding."""

import pytest
import torch

from prunekit.bench.foreign_models import hf_step, spec
from prunekit.errors import PrunekitError
from prunekit.export import fastest_dense
from prunekit.export.compact import compact
from prunekit.prune import OneShot, PruneConfig, prune_
from prunekit.runtime.gpt2 import FastGPT2Decoder

SP = spec("gpt2", tiny=True)


def _pruned(method: str, sparsity: float) -> torch.nn.Module:
    model = SP.build()
    prune_(model, PruneConfig(method=method, schedule=OneShot(sparsity=sparsity)))
    return compact(model, repeats=2, sparse="csr" if method == "unstructured" else "auto")[0]


MODELS = {
    "hf": SP.build,
    "fastest_dense": lambda: fastest_dense(SP.build()),
    "structured": lambda: _pruned("structured", 0.5),
    "factorized": lambda: _pruned("factorized", 0.6),
    "csr": lambda: _pruned("unstructured", 0.9),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_runtime_matches_the_models_own_decoding(name):
    model = MODELS[name]()
    decoder = FastGPT2Decoder(model)
    ids = SP.example()
    with torch.no_grad():
        ref_a, cache = hf_step(model, ids[:, :6])
        ref_b, _ = hf_step(model, ids[:, 6:9], cache)
        state = decoder.init_state(2)
        a, state = decoder.decode_step(ids[:, :6], state)
        b, state = decoder.decode_step(ids[:, 6:9], state)
    assert state.pos == 9
    assert torch.allclose(a, ref_a, atol=1e-5) and torch.allclose(b, ref_b, atol=1e-5)


def test_runtime_errors():
    model = SP.build()
    decoder = FastGPT2Decoder(model)
    ids = torch.zeros(1, 129, dtype=torch.long)
    with pytest.raises(PrunekitError) as exc:
        decoder.decode_step(ids, decoder.init_state(1))
    assert str(exc.value) == (
        "decoding past 128 tokens (GPT2Config.n_positions): start a new state"
    )
    with pytest.raises(PrunekitError, match="call model.eval\\(\\) first"):
        FastGPT2Decoder(model.train())
    with pytest.raises(PrunekitError, match="UserLSTM is not a GPT2LMHeadModel"):
        FastGPT2Decoder(spec("lstm", tiny=True).build())
