"""`speech_corpus(cfg)`: the synthetic corpus (planned, rendered once, cached) or the user's recordings.

The synthetic corpus lives in `$PRUNEKIT_CACHE/speech/synthetic-KEY/`, KEY a hash of every planned
utterance (texts, voices, augmentation), the synthesizers' versions and the rendering settings:
`wav/SPLIT/ID.wav` (16 kHz, 16-bit), `manifest.jsonl` (one utterance per line), `plan.json`
and `corpus.json` (sizes, hours, voices, build time).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json
from prunekit.audio.build import PEAK, build, wav_path
from prunekit.audio.manifest import (
    SPLIT_NAMES,
    SpeechCorpus,
    Utterance,
    read_manifest,
    write_manifest,
)
from prunekit.audio.plan import PlannedUtterance, plan_synthetic
from prunekit.audio.recordings import read_recordings
from prunekit.audio.speech_config import SpeechConfig
from prunekit.audio.synth import Voice, check_voice, engine_versions
from prunekit.audio.wav import SAMPLE_RATE, duration

FORMAT_VERSION = "prunekit-speech-1"
"""Part of the cache key: bump it whenever rendering changes what a plan produces."""

DEFAULT_TEXT_CORPUS = "shakespeare"


def cache_root() -> Path:
    """`$PRUNEKIT_CACHE/speech` (PRUNEKIT_CACHE defaults to ~/.cache/prunekit)."""
    root = os.environ.get("PRUNEKIT_CACHE") or "~/.cache/prunekit"
    return Path(root).expanduser() / "speech"


def with_text_corpus(cfg: SpeechConfig, data_corpus: str) -> SpeechConfig:
    """`cfg` with `corpus` set to the recipe's `data.corpus` where it is not set itself."""
    return cfg if cfg.corpus else cfg.model_copy(update={"corpus": data_corpus})


def plan_key(plan: list[PlannedUtterance]) -> str:
    """Content hash of a plan plus everything else that decides the rendered audio."""
    engines = sorted({Voice.from_id(u.voice).engine for u in plan})
    versions = {e: engine_versions()[e] for e in engines}
    head = {"format": FORMAT_VERSION, "rate": SAMPLE_RATE, "peak": PEAK, "engines": versions}
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for utt in plan:
        digest.update(json.dumps(asdict(utt), sort_keys=True).encode())
    return digest.hexdigest()


def _check_engines(plan: list[PlannedUtterance]) -> None:
    """Fail before rendering anything if a planned voice's engine or voice is not installed."""
    for speaker in sorted({u.voice.split("@")[0] for u in plan}):
        check_voice(Voice.from_id(f"{speaker}@r1.00p1.00"))


def _utterances(plan: list[PlannedUtterance], root: Path) -> dict[str, list[Utterance]]:
    splits: dict[str, list[Utterance]] = {s: [] for s in SPLIT_NAMES}
    for u in plan:
        if u.split not in splits:
            continue
        path = wav_path(root, u)
        extra = {"synth_text": u.synth_text, "augment": asdict(u.augment)}
        speaker = u.voice.split("@")[0]
        splits[u.split].append(
            Utterance(
                u.id, u.split, path, u.text, u.voice, speaker, u.unseen, duration(path), extra
            )
        )
    return splits


def _summary(splits: dict[str, list[Utterance]]) -> dict[str, Any]:
    """Sizes, hours and voices per split."""
    out: dict[str, Any] = {}
    for split, utts in splits.items():
        seconds = [u.seconds or 0.0 for u in utts]
        out[split] = {
            "utterances": len(utts),
            "hours": sum(seconds) / 3600,
            "speakers": len({u.speaker for u in utts}),
            "unseen_utterances": sum(u.unseen for u in utts),
            "max_seconds": max(seconds, default=0.0),
        }
    engines = Counter(u.speaker.split(":")[0] for utts in splits.values() for u in utts)
    out["engines"] = dict(sorted(engines.items()))
    return out


def _synthetic(cfg: SpeechConfig, progress: bool) -> SpeechCorpus:
    from prunekit.data.corpus import load_corpus

    name = cfg.corpus or DEFAULT_TEXT_CORPUS
    text = load_corpus(name)
    plan = plan_synthetic({"train": text.train, "valid": text.valid, "test": text.test}, cfg)
    key = plan_key(plan)
    root = cache_root() / f"synthetic-{key[:16]}"
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        meta = json.loads((root / "corpus.json").read_text(encoding="utf-8"))
        return SpeechCorpus(meta["name"], root, key, read_manifest(manifest, root), meta)
    _check_engines(plan)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "plan.json", {"config": cfg.model_dump(mode="json"), "key": key})
    timing = build(plan, root, workers=cfg.workers, progress=progress)
    splits = _utterances(plan, root)
    train_speakers = {u.speaker for u in splits["train"]}
    meta = {
        "name": f"synthetic-{Path(name).stem}",
        "text_corpus": name,
        "key": key,
        "engine_versions": {e: engine_versions()[e] for e in sorted(cfg.engines)},
        "build_seconds": timing["seconds"],
        "build_sessions": timing["sessions"],
        "workers": cfg.workers,
        "summary": _summary(splits),
        "unseen_speakers": sorted({u.speaker for u in splits["test"] if u.unseen}),
        "train_speakers": sorted(train_speakers),
        "config": cfg.model_dump(mode="json"),
    }
    corpus = SpeechCorpus(meta["name"], root, key, splits, meta)
    write_json(root / "corpus.json", meta)
    write_manifest(manifest, corpus)  # last: its presence means "built"
    return corpus


def _recordings_key(splits: dict[str, list[Utterance]]) -> str:
    digest = hashlib.sha256(FORMAT_VERSION.encode())
    for split in SPLIT_NAMES:
        for u in splits[split]:
            st = Path(u.path).stat()
            row = [u.id, split, str(Path(u.path).resolve()), u.text, u.speaker, st.st_size]
            digest.update(json.dumps(row + [st.st_mtime_ns]).encode())
    return digest.hexdigest()


def _recordings(cfg: SpeechConfig) -> SpeechCorpus:
    source = Path(cfg.source).expanduser()
    splits = read_recordings(source)
    meta = {
        "name": source.stem,
        "source": str(source.resolve()),
        "summary": _summary(splits) if all(u.seconds for s in splits.values() for u in s) else {},
        "unseen_speakers": sorted({u.speaker for u in splits["test"] if u.unseen}),
        "train_speakers": sorted({u.speaker for u in splits["train"]}),
    }
    return SpeechCorpus(source.stem, source, _recordings_key(splits), splits, meta)


def speech_corpus(cfg: SpeechConfig, *, progress: bool = True) -> SpeechCorpus:
    """The utterances of the configured corpus, with wav paths.

    Synthetic: planned from the text corpus `cfg.corpus`, rendered once (in parallel, resumable)
    and cached under `$PRUNEKIT_CACHE/speech`. Recordings: read from `cfg.source`.

    Raises:
        PrunekitError: a missing synthesizer or voice (names the Debian package), a text corpus
            too small for the sizes asked, or bad recordings (see `read_recordings`).
    """
    if cfg.source == "synthetic":
        return _synthetic(cfg, progress)
    return _recordings(cfg)
