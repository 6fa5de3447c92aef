"""What `prunekit bench kws` trains and tests on: tensors, from a named data provider.

A provider is a function `(seed: int) -> KWSData`; the benchmark never reads audio itself.
`speech` is the synthesized Google-12 task (`audio.kws_synth`: a Speech Commands folder rendered
by the audio layer's voices, test speakers never heard in training); a path to a folder in the
Speech Commands layout is read the same way (`audio.kws_features`). `toy` is a synthetic
temporal-pattern task (`prunekit.data.toy_kws`) that runs anywhere in seconds and checks the
benchmark end to end. It is not speech.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from prunekit.data.toy_kws import pattern_classes, pattern_clips
from prunekit.errors import PrunekitError


@dataclass
class KWSData:
    """Clips (N, T, F) float32 with labels (N,) int64 in [0, len(labels)), per split."""

    train_x: Tensor
    train_y: Tensor
    dev_x: Tensor
    dev_y: Tensor
    test_x: Tensor
    test_y: Tensor
    labels: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shapes = set()
        for split in ("train", "dev", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dim() != 3 or y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
                raise PrunekitError(
                    f"{split} split: clips {tuple(x.shape)} and labels {tuple(y.shape)} must be "
                    "(N, frames, features) and (N,) with N > 0: fix the data provider"
                )
            if int(y.min()) < 0 or int(y.max()) >= len(self.labels):
                raise PrunekitError(
                    f"{split} split has labels outside [0, {len(self.labels)}): fix the provider"
                )
            shapes.add(tuple(x.shape[1:]))
        if len(shapes) != 1:
            raise PrunekitError(f"splits have clips of different shapes {sorted(shapes)}")

    @property
    def frames(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def n_in(self) -> int:
        return int(self.train_x.shape[2])


Provider = Callable[[int], KWSData]
_PROVIDERS: dict[str, Provider] = {}


def register_provider(name: str, fn: Provider) -> None:
    """Make `fn` available as `prunekit bench kws --data NAME`."""
    _PROVIDERS[name] = fn


def load_data(name: str, seed: int = 0) -> KWSData:
    """The KWSData of provider `name`, or of the Speech Commands folder at path `name`.

    Raises:
        PrunekitError: an unknown provider, or a bad Speech Commands folder.
    """
    if name in _PROVIDERS:
        return _PROVIDERS[name](seed)
    if Path(name).expanduser().is_dir():
        return folder_data(name, seed)
    known = ", ".join(repr(n) for n in sorted(_PROVIDERS))
    raise PrunekitError(
        f"--data {name!r} is not a known data provider: choose one of {known}, or give the "
        "path of a Speech Commands folder"
    )


def folder_data(root: str | Path, seed: int = 0, progress: bool = True) -> KWSData:
    """Google-12 from a Speech Commands folder (features cached; see `audio.kws_features`)."""
    from prunekit.audio.kws_features import kws_features

    feats = kws_features(root, seed=seed, progress=progress)
    x = feats.normalized()
    meta = {k: feats.meta[k] for k in ("source", "sizes", "speakers", "padded", "cut", "key")}
    return KWSData(
        x["train"], feats.y["train"], x["dev"], feats.y["dev"], x["test"], feats.y["test"],
        labels=list(feats.meta["labels"]), meta={"provider": "speech-commands", "seed": seed, **meta},
    )  # fmt: skip


def speech_data(seed: int = 0) -> KWSData:
    """Google-12 synthesized by the audio layer (`audio.kws_synth`, built once and cached)."""
    from prunekit.audio.kws_synth import synthetic_speech_commands

    data = folder_data(synthetic_speech_commands(), seed)
    data.meta["provider"] = "speech"
    return data


def toy_data(
    seed: int = 0, n_train: int = 1200, n_dev: int = 240, n_test: int = 480, frames: int = 99
) -> KWSData:
    """The synthetic temporal-pattern task with Google-12's shape (12 classes, frames x 32)."""
    splits = [
        pattern_clips(n, frames=frames, seed=seed * 3 + k)
        for k, n in enumerate((n_train, n_dev, n_test))
    ]
    labels = [f"{a}->{b}" for a, b in pattern_classes(4)]
    return KWSData(
        *splits[0], *splits[1], *splits[2], labels=labels, meta={"provider": "toy", "seed": seed}
    )


register_provider("toy", toy_data)
register_provider("speech", speech_data)
