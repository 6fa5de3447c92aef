"""The four models of `prunekit bench foreign`, none of them built by prunekit.

- `gpt2`: Hugging Face GPT2LMHeadModel from a config (4 x 256, vocabulary 8000, tied lm_head);
  timed as batch-1 decoding through `prunekit.runtime.gpt2.FastGPT2Decoder` (dense baseline
  included), and once more as the dense model's own eager decoding with its KV cache.
- `lstm`: a user's LM, Embedding + 2 x 512 nn.LSTM + Linear (named `logits`, which prunekit does
  not guess: its consumers are given at prune time and export remembers them); batch-1 decoding.
- `convgru`: a CTC acoustic model, Conv1d -> BatchNorm -> ReLU twice (stride 2) + 2-layer GRU +
  Linear over 29 CharUnits; timed on one utterance of log-mel frames.
- `wav2vec2`: Hugging Face Wav2Vec2ForCTC from a tiny config (conv feature encoder with a
  GroupNorm, 4 x 256 transformer); timed on one utterance of raw audio.

Models are built from configs (never downloaded). `tiny=True` gives the same architectures at
toy sizes, for tests. A `Spec` says how to build, feed and time a model.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError

MODELS = ("gpt2", "lstm", "convgru", "wav2vec2")


class UserLSTM(nn.Module):
    """Embedding -> multi-layer nn.LSTM -> Linear, as a user writes it: forward(idx, state)."""

    def __init__(self, vocab: int, d: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, hidden, layers, batch_first=True)
        self.logits = nn.Linear(hidden, vocab)

    def forward(self, idx: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """idx (B, T) -> (logits (B, T, V), (h, c))."""
        out, state = self.lstm(self.embed(idx), state)  # (B, T, H)
        return self.logits(out), state


class ConvGRUCTC(nn.Module):
    """Log-mel frames (B, T, n_mels) -> two Conv1d + BatchNorm + ReLU -> GRU -> CTC logits."""

    def __init__(self, n_mels: int, channels: int, hidden: int, layers: int, n_units: int = 29):
        super().__init__()
        self.frontend = nn.Sequential(
            nn.Conv1d(n_mels, channels, 5, stride=2, padding=2), nn.BatchNorm1d(channels),
            nn.ReLU(), nn.Conv1d(channels, channels, 5, padding=2), nn.BatchNorm1d(channels),
            nn.ReLU(),
        )  # fmt: skip
        self.gru = nn.GRU(channels, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, n_units)

    def forward(self, feats: Tensor) -> Tensor:
        """feats (B, T, n_mels) -> logits (B, ceil(T / 2), n_units)."""
        x = self.frontend(feats.transpose(1, 2)).transpose(1, 2)  # (B, T', C)
        out, _ = self.gru(x)  # (B, T', H)
        return self.head(out)


def _random_stats(model: nn.Module, seed: int) -> nn.Module:
    """Give BatchNorms non-trivial running statistics (an untrained model has 0 / 1)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def _gpt2(tiny: bool) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    size = dict(vocab_size=50, n_embd=16, n_layer=2, n_head=4) if tiny else dict(
        vocab_size=8000, n_embd=256, n_layer=4, n_head=4
    )  # fmt: skip
    cfg = GPT2Config(n_positions=128, bos_token_id=0, eos_token_id=0, **size)
    return GPT2LMHeadModel(cfg)


def _wav2vec2(tiny: bool) -> nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    width, conv, layers, ffn = (32, 16, 2, 64) if tiny else (256, 128, 4, 1024)
    cfg = Wav2Vec2Config(
        vocab_size=32, hidden_size=width, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=ffn, conv_dim=(conv,) * 3, conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm="group",
    )  # fmt: skip
    return Wav2Vec2ForCTC(cfg)


@dataclass
class Spec:
    """How the benchmark builds, feeds and times one model.

    Attributes:
        name: the model's name in the table.
        build: () -> the dense model (eval mode, seeded weights).
        example: () -> an input batch (B = 2) for the output comparisons.
        timed: (runner) -> one timed sample in ms (per token when decoding, per utterance else).
        unit: what `timed` measures ("ms/token" or "ms/utterance").
        consumers: `method_args consumers` of structured pruning.
        factorized_exclude: layers factorized pruning must leave out (recurrent layers).
        runner: (model) -> what `timed` runs (the model itself, or a fast decoder of it).
        counted: (model) -> the same call run eagerly, for counting FLOPs (default: timed).
        eager: (dense model) -> an extra dense runner timed for reference (None: none).
    """

    name: str
    build: Callable[[], nn.Module]
    example: Callable[[], Tensor]
    timed: Callable[[Any], float]
    unit: str
    consumers: dict[str, str] = field(default_factory=dict)
    factorized_exclude: tuple[str, ...] = ()
    runner: Callable[[nn.Module], Any] = lambda model: model
    counted: Callable[[nn.Module], Any] | None = None
    eager: Callable[[nn.Module], Any] | None = None


def _ids(vocab: int, shape: tuple[int, int], seed: int = 0) -> Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def hf_step(model: nn.Module, ids: Tensor, cache: Any = None) -> tuple[Tensor, Any]:
    """One Hugging Face causal-LM call on ids (B, T) with its KV cache: (logits, new cache).

    transformers >= 5.2x names the cache `cache` (`past_key_values` is deprecated): the argument
    is picked by what `model.forward` accepts.
    """
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=ids, use_cache=True, **({name: cache} if cache is not None else {}))
    new = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    return out.logits, new


class HFDecoder:
    """A Hugging Face causal LM decoding with its own KV cache, as init_state / decode_step."""

    def __init__(self, model: nn.Module):
        self.model = model

    def init_state(self, batch_size: int) -> Any:
        return None

    def decode_step(self, idx: Tensor, state: Any) -> tuple[Tensor, Any]:
        return hf_step(self.model, idx, state)


def _decode(decoder: Any, ids: Tensor, context: int) -> float:
    """ms per token of one-token `decode_step`s after a `context`-token prefix (untimed)."""
    _, state = decoder.decode_step(ids[:, :context], decoder.init_state(ids.shape[0]))
    steps = ids.shape[1] - context
    start = time.perf_counter()
    for i in range(context, ids.shape[1]):
        _, state = decoder.decode_step(ids[:, i : i + 1], state)
    return (time.perf_counter() - start) * 1e3 / steps


def _decode_state(model: nn.Module, ids: Tensor, context: int) -> float:
    """ms per token of one-token steps of forward(idx, state) -> (logits, state)."""
    _, state = model(ids[:, :context])
    steps = ids.shape[1] - context
    start = time.perf_counter()
    for i in range(context, ids.shape[1]):
        _, state = model(ids[:, i : i + 1], state)
    return (time.perf_counter() - start) * 1e3 / steps


def _once(model: nn.Module, x: Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return (time.perf_counter() - start) * 1e3


def spec(name: str, *, tiny: bool = False, context: int = 64, steps: int = 32) -> Spec:
    """The benchmark spec of model `name` (one of MODELS).

    Raises:
        PrunekitError: an unknown name.
    """
    g = torch.Generator().manual_seed(1)
    if name == "gpt2":
        from prunekit.runtime.gpt2 import FastGPT2Decoder

        vocab = 50 if tiny else 8000
        ids = _ids(vocab, (1, context + steps))
        return Spec(
            name, lambda: _seeded(lambda: _gpt2(tiny)), lambda: _ids(vocab, (2, 12), 2),
            lambda dec: _decode(dec, ids, context), "ms/token", runner=FastGPT2Decoder,
            counted=lambda m: _decode(HFDecoder(m), ids, context), eager=HFDecoder,
        )  # fmt: skip
    if name == "lstm":
        vocab, d, layers = (50, 16, 2) if tiny else (8000, 512, 2)
        ids = _ids(vocab, (1, context + steps))
        return Spec(
            name, lambda: _seeded(lambda: UserLSTM(vocab, d, d, layers)),
            lambda: _ids(vocab, (2, 12), 2), lambda m: _decode_state(m, ids, context),
            "ms/token", {"lstm": "logits", "embed": "lstm"}, ("lstm",),
        )  # fmt: skip
    if name == "convgru":
        mels, ch, hidden, frames = (20, 16, 12, 40) if tiny else (80, 256, 256, 200)
        x = torch.randn(1, frames, mels, generator=g)
        return Spec(
            name, lambda: _random_stats(_seeded(lambda: ConvGRUCTC(mels, ch, hidden, 2)), 0),
            lambda: torch.randn(2, frames, mels, generator=torch.Generator().manual_seed(2)),
            lambda m: _once(m, x), "ms/utterance", {"frontend.3": "gru"}, ("gru",),
        )  # fmt: skip
    if name == "wav2vec2":
        samples = 800 if tiny else 8000  # 0.5 s at 16 kHz
        x = torch.randn(1, samples, generator=g)
        return Spec(
            name, lambda: _seeded(lambda: _wav2vec2(tiny)),
            lambda: torch.randn(2, samples, generator=torch.Generator().manual_seed(2)),
            lambda m: _once(m, x), "ms/utterance",
        )  # fmt: skip
    raise PrunekitError(f"model {name!r} is not one of {list(MODELS)}: pick from them")


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return build().eval()
