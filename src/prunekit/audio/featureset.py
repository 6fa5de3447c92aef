"""Features of many utterances packed in one tensor, saved as safetensors + JSON (never a pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from prunekit.atomic import write_text, write_with
from prunekit.errors import PrunekitError


@dataclass
class FeatureSet:
    """Per-utterance feature matrices with their transcripts.

    Attributes:
        feats: (sum of T_i, F) float features of every utterance, one after another.
        offsets: (N + 1,) int64; utterance i is feats[offsets[i]:offsets[i + 1]].
        texts: N spoken-form transcripts.
        ids: N utterance ids.
        voices: N voice / speaker names.
        meta: JSON-able facts (feature settings, corpus hash, ...).
    """

    feats: torch.Tensor
    offsets: torch.Tensor
    texts: list[str]
    ids: list[str]
    voices: list[str]
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_list(
        cls,
        feats: list[torch.Tensor],
        texts: list[str],
        ids: list[str],
        voices: list[str],
        meta: dict | None = None,
    ) -> FeatureSet:
        """Pack a list of (T_i, F) matrices."""
        if not (len(feats) == len(texts) == len(ids) == len(voices)):
            raise ValueError("feats, texts, ids and voices must have one entry per utterance")
        lengths = torch.tensor([0] + [f.shape[0] for f in feats], dtype=torch.int64)
        packed = torch.cat(feats) if feats else torch.zeros(0, 0)
        return cls(
            packed, lengths.cumsum(0), list(texts), list(ids), list(voices), dict(meta or {})
        )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> torch.Tensor:
        """(T_i, F) features of utterance i."""
        return self.feats[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) frames per utterance."""
        return self.offsets[1:] - self.offsets[:-1]

    def subset(self, indices: list[int]) -> FeatureSet:
        """A new FeatureSet holding utterances `indices`, in that order."""
        return FeatureSet.from_list(
            [self[i] for i in indices],
            [self.texts[i] for i in indices],
            [self.ids[i] for i in indices],
            [self.voices[i] for i in indices],
            self.meta,
        )

    def save(self, path: str | Path) -> None:
        """Write `path` (.safetensors) and `path`.json atomically."""
        path = Path(path)
        tensors = {"feats": self.feats.contiguous(), "offsets": self.offsets.contiguous()}
        write_with(path, lambda tmp: save_file(tensors, str(tmp)))
        info = {"texts": self.texts, "ids": self.ids, "voices": self.voices, "meta": self.meta}
        write_text(path.with_suffix(".json"), json.dumps(info))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        """Read a FeatureSet written by `save`.

        Raises:
            PrunekitError: a missing, truncated or inconsistent file.
        """
        path = Path(path)
        try:
            tensors = load_file(str(path))
            info = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            out = cls(
                tensors["feats"],
                tensors["offsets"],
                info["texts"],
                info["ids"],
                info["voices"],
                info["meta"],
            )
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise PrunekitError(
                f"feature file {path} is missing or corrupt ({str(exc).splitlines()[0]}): "
                "delete it to rebuild the features"
            ) from None
        if out.offsets.numel() != len(out.texts) + 1 or int(out.offsets[-1]) != out.feats.shape[0]:
            raise PrunekitError(f"feature file {path} is inconsistent: delete it to rebuild it")
        return out
