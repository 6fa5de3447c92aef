"""A user's recordings as a speech corpus: LibriSpeech, Kaldi or CSV layout.

- LibriSpeech: SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt (lines "ID TRANSCRIPT") beside ID.flac
  (or ID.wav), at any depth below the folder.
- Kaldi: a folder with `wav.scp` (lines "ID PATH") and `text` (lines "ID TRANSCRIPT"), and
  optionally `utt2spk` (lines "ID SPEAKER").
- CSV: a file with the header `path,text` or `path,text,speaker` (optionally an `id` column;
  else the path is the id; relative paths are relative to the CSV file's folder).

A folder holding `train`, `dev` (or `valid`) and `test` (sub-folders or .csv files, each in any
layout) gives the splits; anything else is one set, split 90 / 5 / 5 % by a hash of the ids.
Transcripts are normalized with `spoken_form`; letters outside a-z are an error (the acoustic
model spells with a-z and the apostrophe only).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from dataclasses import replace
from pathlib import Path

from prunekit.audio.manifest import SPLIT_NAMES, Utterance
from prunekit.data.spoken import spoken_form
from prunekit.errors import PrunekitError

log = logging.getLogger(__name__)

LAYOUTS = (
    "LibriSpeech (*/*/*.trans.txt + .flac), Kaldi (wav.scp + text) or CSV (path,text[,speaker])"
)
UNKNOWN_SPEAKER = "unknown"
_FOREIGN_LETTER = re.compile(r"[^\W\d_a-z]")  # a letter that is not a-z


def normalize_transcript(text: str, utt_id: str, where: Path) -> str:
    """`spoken_form(text)`, refusing letters the acoustic model cannot spell and empty results.

    Raises:
        PrunekitError: a non-ASCII letter, or nothing left to say.
    """
    bad = _FOREIGN_LETTER.search(text.lower().replace("\u2019", "'"))
    if bad:
        raise PrunekitError(
            f"transcript of {utt_id} in {where} has the letter {bad.group()!r}, which the acoustic "
            "model cannot emit (a-z and ' only): transliterate it to ASCII (e.g. `iconv -f utf-8 "
            "-t ascii//TRANSLIT`) or drop the utterance"
        )
    out = spoken_form(text)
    if not out:
        raise PrunekitError(
            f"transcript of {utt_id} in {where} has no words ({text!r}): fix it or drop the utterance"
        )
    return out


def _key_values(path: Path) -> list[tuple[str, str]]:
    """Lines "KEY VALUE..." of a Kaldi-style file (blank lines skipped)."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not value.strip():
            raise PrunekitError(f"{path} line {n} has no value after {key!r}: write 'ID VALUE'")
        rows.append((key, value.strip()))
    return rows


def _utt(utt_id: str, split: str, path: Path, text: str, speaker: str, where: Path) -> Utterance:
    speaker = speaker or UNKNOWN_SPEAKER
    return Utterance(
        utt_id, split, path, normalize_transcript(text, utt_id, where), speaker, speaker
    )


def _librispeech(folder: Path, split: str) -> list[Utterance]:
    utts = []
    for trans in sorted(folder.rglob("*.trans.txt")):
        for utt_id, text in _key_values(trans):
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file() and (trans.parent / f"{utt_id}.wav").is_file():
                audio = trans.parent / f"{utt_id}.wav"
            utts.append(_utt(utt_id, split, audio, text, utt_id.split("-")[0], trans))
    return utts


def _kaldi(folder: Path, split: str) -> list[Utterance]:
    if (folder / "segments").is_file():
        raise PrunekitError(
            f"{folder} has a Kaldi `segments` file, which prunekit does not read: cut the "
            "segments into files (e.g. with Kaldi's extract-segments) and list those in wav.scp"
        )
    wavs = dict(_key_values(folder / "wav.scp"))
    spk = dict(_key_values(folder / "utt2spk")) if (folder / "utt2spk").is_file() else {}
    utts = []
    for utt_id, text in _key_values(folder / "text"):
        if utt_id not in wavs:
            raise PrunekitError(f"{folder}/text has {utt_id}, which wav.scp lacks: add its audio")
        entry = wavs[utt_id]
        if entry.endswith("|"):
            raise PrunekitError(
                f"wav.scp entry of {utt_id} is a command ({entry[:40]}...), prunekit reads "
                "files only: write the audio to files and list their paths in wav.scp"
            )
        path = Path(entry)
        utts.append(
            _utt(
                utt_id,
                split,
                path if path.is_absolute() else folder / path,
                text,
                spk.get(utt_id, ""),
                folder / "text",
            )
        )
    return utts


def _csv(path: Path, split: str) -> list[Utterance]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in reader.fieldnames or []]
        if "path" not in fields or "text" not in fields:
            raise PrunekitError(
                f"CSV manifest {path} needs a header line `path,text` or `path,text,speaker` "
                f"(found {','.join(fields) or 'nothing'}): add it"
            )
        reader.fieldnames = fields
        utts = []
        for n, row in enumerate(reader, 2):
            given = Path(row["path"] or "")
            audio = given if given.is_absolute() else path.parent / given
            utt_id = row.get("id") or given.with_suffix("").as_posix().strip("/") or f"line{n}"
            utts.append(
                _utt(utt_id, split, audio, row["text"] or "", row.get("speaker") or "", path)
            )
    return utts


def read_set(path: Path, split: str) -> list[Utterance]:
    """The utterances of one folder or CSV file in any supported layout, as split `split`."""
    if path.is_file() and path.suffix.lower() == ".csv":
        utts = _csv(path, split)
    elif (path / "wav.scp").is_file() and (path / "text").is_file():
        utts = _kaldi(path, split)
    elif path.is_dir() and next(path.rglob("*.trans.txt"), None) is not None:
        utts = _librispeech(path, split)
    elif path.is_dir() and len(csvs := sorted(path.glob("*.csv"))) == 1:
        utts = _csv(csvs[0], split)
    else:
        raise PrunekitError(f"{path} has no recordings in a known layout: use {LAYOUTS}")
    if not utts:
        raise PrunekitError(f"{path} lists no utterances: add recordings and transcripts")
    missing = [u.path for u in utts if not Path(u.path).is_file()]
    if missing:
        raise PrunekitError(
            f"{len(missing)} audio file(s) listed in {path} do not exist (first: {missing[0]}): "
            "fix the paths or add the files"
        )
    ids = [u.id for u in utts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PrunekitError(f"utterance id {dup} occurs twice in {path}: make ids unique")
    return utts


def _split_dirs(folder: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for split, names in {"train": ["train"], "dev": ["dev", "valid"], "test": ["test"]}.items():
        for name in names:
            for candidate in (folder / name, folder / f"{name}.csv"):
                if candidate.exists():
                    found.setdefault(split, candidate)
    if not found:
        return None
    lacking = [s for s in SPLIT_NAMES if s not in found]
    if lacking:
        raise PrunekitError(
            f"{folder} has {sorted(found)} but lacks {lacking}: add the missing split"
        )
    return found


def _hash_split(utts: list[Utterance], source: Path) -> dict[str, list[Utterance]]:
    if len(utts) < 3:
        raise PrunekitError(
            f"{source} has {len(utts)} utterance(s), too few to split into train/dev/test: "
            "add recordings, or give train/, dev/ and test/ folders"
        )
    order = sorted(utts, key=lambda u: hashlib.sha1(u.id.encode()).hexdigest())
    held = max(1, len(utts) // 20)
    split_of = {u.id: "dev" for u in order[:held]} | {u.id: "test" for u in order[held : 2 * held]}
    return {
        s: [replace(u, split=s) for u in utts if split_of.get(u.id, "train") == s]
        for s in SPLIT_NAMES
    }


def read_recordings(source: str | Path) -> dict[str, list[Utterance]]:
    """Train / dev / test utterances of a user's recordings (see the module docstring).

    Test utterances are marked `unseen` when their speaker does not occur in train.

    Raises:
        PrunekitError: a missing path, an unknown layout, a missing audio file, a duplicate id,
            a transcript with letters outside a-z, or too few utterances to split.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise PrunekitError(
            f"speech source {source} does not exist: pass a folder or CSV of recordings "
            "(or 'synthetic')"
        )
    dirs = _split_dirs(source) if source.is_dir() else None
    if dirs:
        splits = {s: read_set(p, s) for s, p in dirs.items()}
    else:
        splits = _hash_split(read_set(source, "train"), source)
    train_speakers = {u.speaker for u in splits["train"]}
    splits["test"] = [replace(u, unseen=u.speaker not in train_speakers) for u in splits["test"]]
    return splits
