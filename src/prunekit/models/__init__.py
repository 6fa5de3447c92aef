"""Language models: a Transformer NNLM with relative positions and an LSTM/GRU LM."""

from prunekit.models.registry import build_model, model_config
from prunekit.models.rnn_lm import RNNLM, RNNLMConfig
from prunekit.models.transformer_lm import TransformerLM, TransformerLMConfig

__all__ = [
    "RNNLM",
    "RNNLMConfig",
    "TransformerLM",
    "TransformerLMConfig",
    "build_model",
    "model_config",
]
