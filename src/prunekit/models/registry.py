"""Build a model from a plain config dict (`{"arch": ..., **fields}`) and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models.acoustic import AcousticConfig, CTCAcousticModel
from prunekit.models.fastgrnn_lm import FastGRNNLM, FastGRNNLMConfig
from prunekit.models.kws import KWSClassifier, KWSConfig
from prunekit.models.rnn_lm import RNNLM, RNNLMConfig
from prunekit.models.transformer_lm import TransformerLM, TransformerLMConfig

# arch name -> (config dataclass, model class)
ARCHS: dict[str, tuple[type, type[nn.Module]]] = {
    "transformer": (TransformerLMConfig, TransformerLM),
    "rnn": (RNNLMConfig, RNNLM),
    "fastgrnn": (FastGRNNLMConfig, FastGRNNLM),
    "kws": (KWSConfig, KWSClassifier),  # a keyword classifier, not an LM (no vocab_size)
    "ctc": (AcousticConfig, CTCAcousticModel),
}


def _allowed() -> str:
    return ", ".join(repr(a) for a in ARCHS)


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """Build a model from `{"arch": "transformer" | "rnn" | "fastgrnn" | "kws" | "ctc", **fields}`.

    Raises PrunekitError for a missing or unknown arch and for unknown or invalid fields.
    """
    if "arch" not in config:
        raise PrunekitError(f"model.arch is missing: set model.arch to one of {_allowed()}")
    fields = dict(config)
    arch = fields.pop("arch")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise PrunekitError(f"model.arch={arch!r} is not supported: choose one of {_allowed()}")
    config_cls, model_cls = ARCHS[arch]
    return model_cls(config_cls.from_dict(fields))


def registered_config(model: nn.Module) -> dict[str, Any] | None:
    """`model_config(model)` for a model prunekit builds; None for any other module."""
    for arch, (_, model_cls) in ARCHS.items():
        if isinstance(model, model_cls):
            return {"arch": arch, **model.config.to_dict()}
    return None


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config dict that `build_model` would rebuild `model` from (including "arch").

    This is the architecture as built; compression applied afterwards is not reflected.
    """
    config = registered_config(model)
    if config is not None:
        return config
    names = ", ".join(cls.__name__ for _, cls in ARCHS.values())
    raise PrunekitError(
        f"model_config got a {type(model).__name__}: only {names} models have a config dict"
    )
