"""Models: a Transformer NNLM with relative positions, an LSTM/GRU LM, a CTC acoustic model."""

from prunekit.models.acoustic import AcousticConfig, CTCAcousticModel
from prunekit.models.registry import build_model, model_config
from prunekit.models.rnn_lm import RNNLM, RNNLMConfig
from prunekit.models.transformer_lm import TransformerLM, TransformerLMConfig

__all__ = [
    "AcousticConfig",
    "CTCAcousticModel",
    "RNNLM",
    "RNNLMConfig",
    "TransformerLM",
    "TransformerLMConfig",
    "build_model",
    "model_config",
]
