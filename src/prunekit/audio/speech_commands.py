"""Read a folder in Google Speech Commands' layout: one subfolder of clips per word.

    ROOT/WORD/SPEAKER_nohash_N.wav      (WORD: a v0.01 or v0.02 word; flac works too)
    ROOT/_background_noise_/*.wav       noise recordings (silence clips are cut from them)
    ROOT/validation_list.txt            optional: "WORD/FILE.wav" per line -> dev
    ROOT/testing_list.txt               optional: the same -> test

Clips in neither list are training clips. Without a list, its split is drawn by TensorFlow's
rule (`input_data.which_set`): a hash of the speaker (the file name before "_nohash_") puts 10 %
of the speakers in dev and 10 % in test, so no speaker is in two splits. Keywords are their own
class; every other word is unknown (`audio.kws_words`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from prunekit.audio.kws_words import BACKGROUND, KEYWORDS, KNOWN_WORDS, LABELS, label_of
from prunekit.errors import PrunekitError

AUDIO_SUFFIXES = (".wav", ".flac")
LISTS = {"dev": "validation_list.txt", "test": "testing_list.txt"}
HASH_PERCENT = {"dev": 10.0, "test": 10.0}
_MAX_PER_CLASS = 2**27 - 1  # TensorFlow's MAX_NUM_WAVS_PER_CLASS


@dataclass(frozen=True)
class Clip:
    """One recording: its path, relative name ("WORD/FILE.wav"), word, class, speaker and split."""

    path: Path
    name: str
    word: str
    label: int
    speaker: str
    split: str


def speaker_of(filename: str) -> str:
    """The speaker part of a Speech Commands file name ("0a7c2a8d_nohash_0.wav" -> "0a7c2a8d")."""
    stem = Path(filename).stem
    return re.sub(r"_nohash_.*$", "", stem)


def hash_split(filename: str, dev_percent: float = 10.0, test_percent: float = 10.0) -> str:
    """TensorFlow's `which_set`: "train", "dev" or "test" from a hash of the file's speaker."""
    digest = hashlib.sha1(speaker_of(filename).encode()).hexdigest()
    percent = (int(digest, 16) % (_MAX_PER_CLASS + 1)) * (100.0 / _MAX_PER_CLASS)
    if percent < dev_percent:
        return "dev"
    return "test" if percent < dev_percent + test_percent else "train"


def _word_folders(root: Path) -> list[Path]:
    """The word subfolders of root; an unknown folder name is an error."""
    if not root.is_dir():
        raise PrunekitError(
            f"{root} is not a folder: pass a Speech Commands folder (one subfolder per word)"
        )
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    for p in folders:
        if p.name != BACKGROUND and p.name not in KNOWN_WORDS:
            raise PrunekitError(
                f"folder {p} is not a Speech Commands word: keep one folder per word "
                f"({', '.join(KEYWORDS)}, or another v0.01/v0.02 word) and {BACKGROUND}, "
                "or move it out"
            )
    return [p for p in folders if p.name != BACKGROUND]


def _read_list(root: Path, split: str) -> set[str] | None:
    path = root / LISTS[split]
    if not path.is_file():
        return None
    names = path.read_text(encoding="utf-8").split()
    return {n.strip().replace("\\", "/") for n in names if n.strip()}


def background_files(root: Path) -> list[Path]:
    """The noise recordings of `_background_noise_`.

    Raises:
        PrunekitError: none (the silence class would be empty).
    """
    folder = root / BACKGROUND
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise PrunekitError(
            f"the silence class is empty: {folder} holds no wav files to cut silence clips from; "
            "add a few recordings of background noise there"
        )
    return files


def read_speech_commands(root: str | Path) -> dict[str, list[Clip]]:
    """Every clip of a Speech Commands folder, by split ("train", "dev", "test").

    Raises:
        PrunekitError: not a folder, a folder that is not a Speech Commands word, no background
            noise, or an empty class (a keyword, or unknown, with no training clip), or an empty
            dev or test split.
    """
    root = Path(root).expanduser()
    folders = _word_folders(root)
    lists = {s: _read_list(root, s) for s in LISTS}
    splits: dict[str, list[Clip]] = {"train": [], "dev": [], "test": []}
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in AUDIO_SUFFIXES or path.name.startswith("."):
                continue
            name = f"{folder.name}/{path.name}"
            split = _split_of(name, lists)
            splits[split].append(
                Clip(path, name, folder.name, label_of(folder.name), speaker_of(path.name), split)
            )
    background_files(root)
    _check_classes(root, splits)
    return splits


def _split_of(name: str, lists: dict[str, set[str] | None]) -> str:
    for split, names in lists.items():
        if names is not None and name in names:
            return split
    missing = {s: HASH_PERCENT[s] if names is None else 0.0 for s, names in lists.items()}
    return hash_split(name, missing["dev"], missing["test"])


def _check_classes(root: Path, splits: dict[str, list[Clip]]) -> None:
    have = {c.label for c in splits["train"]}
    for label, name in enumerate(LABELS[1:], start=1):
        if label not in have:
            what = "any word other than the keywords" if name == LABELS[1] else f"'{name}'"
            raise PrunekitError(
                f"class {name} is empty: {root} has no training clip of {what}; add a folder "
                "of its clips (WORD/SPEAKER_nohash_N.wav)"
            )
    for split in ("dev", "test"):
        if not splits[split]:
            raise PrunekitError(
                f"the {split} split of {root} is empty: list its clips in {LISTS[split]} "
                "or add more speakers (10 % of them go to each of dev and test)"
            )
