"""Who reads a layer's output channels: channel chains for structured pruning and export.

Removing output channel j of a convolution A (or column j of an embedding) is exact only if one
consumer B reads it, at input channel j, through per-channel modules only (BatchNorm,
InstanceNorm, GroupNorm with one group per channel, activations, dropout, pooling, padding).
Structured pruning then masks A's row j together with B's input column j, and export removes
both and slices the norms in between. `find_chains` finds B:

- `consumers[A]` when given (A a conv or an embedding; B a conv with groups=1, an nn.Linear,
  Hugging Face's Conv1D or an LSTM/GRU reading A's channels as its input features);
- otherwise, for a conv, the next conv in A's *stream* with groups=1 and in_channels equal to
  A's out_channels, with only per-channel modules between them.

A stream is a run of leaf modules whose execution order is known from the module tree: the
children of an `nn.Sequential` or `nn.ModuleList` (assumed to run in order, as they almost always
do) and of a "conv block" (a module whose first child is a conv and whose other children are
per-channel leaves, e.g. conv -> norm -> activation, as in Wav2Vec2's feature encoder). Any other
module is opaque: its children start streams of their own, so nothing is coupled across it. A
model whose data flow differs (a residual around a conv, ...) needs explicit `consumers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn
from torch.nn.modules import activation, batchnorm, instancenorm, padding, pooling

from prunekit.errors import PrunekitError
from prunekit.prune.scope import _is_conv1d

CONVS = (nn.Conv1d, nn.Conv2d)
NORMS = (batchnorm._BatchNorm, instancenorm._InstanceNorm, nn.GroupNorm)
_MIXING = (activation.Softmax, activation.Softmin, activation.LogSoftmax, activation.GLU)
_PER_CHANNEL = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
    pooling._MaxPoolNd, pooling._AvgPoolNd, pooling._AdaptiveAvgPoolNd,
    pooling._AdaptiveMaxPoolNd, padding._ConstantPadNd, padding._ReflectionPadNd,
    padding._ReplicationPadNd,
)  # fmt: skip
_BARRIER = ("", None)


@dataclass(frozen=True)
class Chain:
    """`producer`'s output channels are read only by `consumer`, through `norms` (names)."""

    producer: str
    consumer: str
    norms: tuple[str, ...] = ()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def n_channels(norm: nn.Module) -> int:
    """Channels of a BatchNorm / InstanceNorm / GroupNorm."""
    return norm.num_channels if isinstance(norm, nn.GroupNorm) else norm.num_features


def is_per_channel(m: nn.Module) -> bool:
    """A leaf that maps each channel on its own (norms, activations, dropout, pooling, padding)."""
    if isinstance(m, nn.GroupNorm):
        return m.num_groups == m.num_channels
    if isinstance(m, (*NORMS, *_PER_CHANNEL)):
        return True
    if isinstance(m, _MIXING) or any(True for _ in m.parameters()) or _children(m):
        return False
    hf_activation = type(m).__module__.startswith("transformers.activations")
    return hf_activation or type(m).__module__ == activation.__name__


def _children(m: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named children, without the `parametrizations` holder of a parametrized module."""
    return [(n, c) for n, c in m.named_children() if n != "parametrizations"]


def _is_leaf(m: nn.Module) -> bool:
    return not _children(m) or isinstance(m, nn.RNNBase)


def _is_conv_block(m: nn.Module) -> bool:
    kids = [c for _, c in _children(m)]
    return (
        bool(kids)
        and isinstance(kids[0], CONVS)
        and all(_is_leaf(k) and is_per_channel(k) for k in kids[1:])
    )


def _stream(name: str, m: nn.Module, found: list[list]) -> list:
    """The leaves of `m` in run order, or a barrier (its children's streams go to `found`)."""
    if _is_leaf(m) or _is_conv1d(m):
        return [(name, m)]
    kids = _children(m)
    if isinstance(m, nn.Sequential | nn.ModuleList) or _is_conv_block(m):
        return [leaf for k, c in kids for leaf in _stream(_join(name, k), c, found)]
    for k, c in kids:
        found.append(_stream(_join(name, k), c, found))
    return [_BARRIER]


def streams(model: nn.Module) -> list[list[tuple[str, nn.Module | None]]]:
    """Every stream of `model` (see the module docstring); barriers are ("", None)."""
    found: list[list] = []
    found.append(_stream("", model, found))
    return found


def reads_channels(m: nn.Module, channels: int) -> bool:
    """Whether `m` can read `channels` features as its input channels (a chain's consumer)."""
    if isinstance(m, CONVS):
        return m.groups == 1 and m.in_channels == channels
    if isinstance(m, nn.Linear):
        return m.in_features == channels
    if _is_conv1d(m):
        return int(m.weight.shape[0]) == channels
    if isinstance(m, nn.RNNBase):
        return m.input_size == channels
    return False


def _out_channels(m: nn.Module) -> int | None:
    if isinstance(m, CONVS):
        return m.out_channels if m.groups == 1 else None
    if isinstance(m, nn.Embedding):
        return m.embedding_dim
    return None


def _walk(stream: list, i: int, channels: int, auto: bool) -> tuple[str | None, list[str]]:
    """From position i: (the next conv reading `channels` if `auto`, the norms passed)."""
    norms = []
    for name, m in stream[i + 1 :]:
        if m is None:
            break
        if isinstance(m, NORMS) and is_per_channel(m):
            if n_channels(m) != channels:
                break
            norms.append(name)
        elif not is_per_channel(m):
            if auto and isinstance(m, CONVS) and reads_channels(m, channels):
                return name, norms
            break
    return None, norms


def _explicit(model: nn.Module, name: str, cname: str, channels: int) -> None:
    try:
        c = model.get_submodule(cname)
    except AttributeError:
        c = None
    if c is None or not reads_channels(c, channels):
        raise PrunekitError(
            f"method_args consumers[{name!r}]={cname!r} must name a layer reading {channels} "
            "input channels (a Conv1d/Conv2d with groups=1, an nn.Linear, a Conv1D or an "
            "LSTM/GRU): fix the consumers mapping"
        )


def find_chains(model: nn.Module, consumers: Mapping[str, str] | None = None) -> dict[str, Chain]:
    """Channel chains of `model`: producer name -> Chain (convs found, embeddings if given).

    Raises:
        PrunekitError: a `consumers` entry whose consumer cannot read the producer's channels.
    """
    consumers = consumers or {}
    chains: dict[str, Chain] = {}
    for stream in streams(model):
        for i, (name, m) in enumerate(stream):
            channels = None if m is None else _out_channels(m)
            if channels is None or not (isinstance(m, CONVS) or name in consumers):
                continue
            cname, norms = _walk(stream, i, channels, auto=name not in consumers)
            if name in consumers:
                cname = consumers[name]
                _explicit(model, name, cname, channels)
            if cname is not None:
                chains[name] = Chain(name, cname, tuple(norms))
    return chains
