"""Utterance records and the speech corpus they make up; manifests as JSON lines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunekit.atomic import write_text
from prunekit.errors import PrunekitError

SPLIT_NAMES = ("train", "dev", "test")


@dataclass(frozen=True)
class Utterance:
    """One recording and its transcript.

    Attributes:
        id: unique utterance id.
        split: "train", "dev" or "test".
        path: the audio file.
        text: spoken-form transcript (`prunekit.data.spoken.spoken_form`).
        voice: the voice (synthetic: `Voice.id`) or speaker of a recording.
        speaker: the speaker without rate / pitch (recordings: same as `voice`).
        unseen: test only: the speaker never occurs in train.
        seconds: duration, where known.
        extra: anything else (synthetic: what the synthesizer read and the augmentation).
    """

    id: str
    split: str
    path: Path
    text: str
    voice: str
    speaker: str
    unseen: bool = False
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class SpeechCorpus:
    """The utterances of each split, where their audio lives, and facts about the corpus.

    Attributes:
        name: e.g. "synthetic-shakespeare" or the recordings folder's name.
        root: the corpus folder (synthetic: its cache folder; recordings: the user's folder).
        key: content hash (cache key of the features computed from it).
        splits: "train", "dev", "test" -> utterances.
        meta: JSON-able facts (sizes, build time, voices, engine versions, ...).
    """

    name: str
    root: Path
    key: str
    splits: dict[str, list[Utterance]]
    meta: dict[str, Any] = field(default_factory=dict)

    def hours(self, split: str | None = None) -> float | None:
        """Hours of audio in one split or all (None if some durations are unknown)."""
        utts = self.splits[split] if split else [u for s in self.splits.values() for u in s]
        if any(u.seconds is None for u in utts):
            return None
        return sum(u.seconds or 0.0 for u in utts) / 3600

    @property
    def unseen_voices(self) -> list[str]:
        """Voices of test utterances whose speaker never occurs in train."""
        return sorted({u.voice for u in self.splits["test"] if u.unseen})


def _row(utt: Utterance, root: Path) -> dict[str, Any]:
    row = asdict(utt)
    path = Path(utt.path)
    row["path"] = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    return row


def write_manifest(path: Path, corpus: SpeechCorpus) -> None:
    """Write every utterance as one JSON line, paths relative to the corpus root where inside it."""
    rows = [_row(u, corpus.root) for s in SPLIT_NAMES for u in corpus.splits[s]]
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_manifest(path: Path, root: Path) -> dict[str, list[Utterance]]:
    """Read `write_manifest`'s file back into splits.

    Raises:
        PrunekitError: a missing or corrupt manifest.
    """
    splits: dict[str, list[Utterance]] = {s: [] for s in SPLIT_NAMES}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            row["path"] = root / row["path"]
            utt = Utterance(**row)
            splits[utt.split].append(utt)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise PrunekitError(
            f"speech manifest {path} is missing or corrupt ({str(exc).splitlines()[0]}): "
            "delete it to rebuild the corpus"
        ) from None
    return splits
