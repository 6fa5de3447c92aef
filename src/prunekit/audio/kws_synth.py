"""A synthetic Google Speech Commands folder (the 12-class v0.01 task), rendered once and cached.

`synthetic_speech_commands(cfg)` plans clips of the ten keywords and of the twenty other v0.01
words (the unknown class), says each word with a voice of the audio layer (`english_voices`),
renders them with the audio layer's parallel, resumable builder (`audio.build.build`) and writes
them in Speech Commands' own layout, so that one reader (`audio.speech_commands`) serves it and
real recordings alike:

    ROOT/speech_commands/WORD/SPEAKER_nohash_N.wav     1 s, 16 kHz, 16-bit mono
    ROOT/speech_commands/_background_noise_/*.wav      30 s of white, pink, brown noise, babble
    ROOT/speech_commands/validation_list.txt, testing_list.txt

ROOT is `$PRUNEKIT_CACHE/speech/kws-KEY`, KEY a hash of the plan (words, voices, recording
conditions), the synthesizers' versions and this module's format. Speakers are split three ways:
test speakers (`test_voices`, the audio layer's held-out voices) and dev speakers (`dev_voices`)
never say anything in train. Training clips draw a synthesizer by its share, then one of its
speakers; dev and test clips draw a speaker uniformly (as Speech Commands has many speakers with
a few clips each), so no single held-out voice dominates the score. Each clip places the trimmed word at a random offset in 1 s and
gets the recording conditions of `KWSSynthConfig` (light noise, a room, a level); the training
augmentation of Speech Commands (time shift, background noise) comes later, with the features
(`audio.kws_features`), as in TensorFlow's `input_data.py`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from prunekit.atomic import write_json, write_text
from prunekit.audio.augment import Augmentation, apply_augmentation, babble, coloured_noise
from prunekit.audio.build import PEAK, build, render
from prunekit.audio.corpus import cache_root, plan_key
from prunekit.audio.kws_words import BACKGROUND, KEYWORDS, UNKNOWN_WORDS
from prunekit.audio.plan import PlannedUtterance, VoicePool, split_speakers
from prunekit.audio.speech_config import DEFAULT_UNSEEN
from prunekit.audio.synth import Voice, check_voice, english_voices, synthesize
from prunekit.audio.wav import SAMPLE_RATE, load_audio, write_wav
from prunekit.errors import PrunekitError

FORMAT = "prunekit-kws-1"
"""Part of the cache key: bump it whenever rendering changes what a plan produces."""

CLIP = SAMPLE_RATE  # samples in a 1 s clip
NOISE_SECONDS = 30
NOISE_RMS = 0.1
DEV_VOICES = ["espeak-ng:en-us-nyc*", "espeak-ng:*+m6", "espeak-ng:*+f4", "flite:awb"]
"""Speakers (fnmatch patterns) of the dev split, never in train (test: `DEFAULT_UNSEEN`)."""

FILLER = [
    "morning",
    "table",
    "window",
    "paper",
    "garden",
    "water",
    "little",
    "river",
    "people",
    "market",
    "letter",
    "music",
    "city",
    "winter",
    "summer",
    "kitchen",
    "yellow",
    "purple",
    "silver",
    "orange",
    "number",
    "simple",
    "pencil",
    "yesterday",
    "tomorrow",
    "basket",
    "quiet",
    "lemon",
    "candle",
    "mountain",
    "ocean",
    "station",
    "ticket",
    "travel",
    "coffee",
]
"""Babble material: words that are not Speech Commands words."""


class KWSSynthConfig(BaseModel):
    """What the synthetic Speech Commands folder holds.

    Attributes:
        train_per_class, dev_per_class, test_per_class: clips of each keyword and of the unknown
            class (unknown words drawn uniformly from the other 20); silence comes from the
            background noise.
        engines: relative share of clips per synthesizer.
        test_voices, dev_voices: speaker patterns of the test and dev splits.
        noise_prob, snr_db: chance of light recording noise (white / pink / brown) and its SNR.
        reverb_prob, rt60: chance of a synthetic room and its reverberation time range.
        gain_db: level range of a clip.
        workers: rendering processes.
        seed: every draw of the plan.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_per_class: int = Field(450, ge=1)
    dev_per_class: int = Field(60, ge=1)
    test_per_class: int = Field(200, ge=1)
    engines: dict[str, float] = Field(
        default_factory=lambda: {"espeak-ng": 0.6, "flite": 0.25, "festival": 0.15}
    )
    test_voices: list[str] = Field(default_factory=lambda: list(DEFAULT_UNSEEN))
    dev_voices: list[str] = Field(default_factory=lambda: list(DEV_VOICES))
    noise_prob: float = Field(0.5, ge=0, le=1)
    snr_db: list[float] = Field(default_factory=lambda: [20.0, 25.0, 30.0, 35.0, 40.0])
    reverb_prob: float = Field(0.15, ge=0, le=1)
    rt60: tuple[float, float] = (0.15, 0.4)
    gain_db: tuple[float, float] = (-10.0, 0.0)
    workers: int = Field(2, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> KWSSynthConfig:
        if not self.engines or sum(self.engines.values()) <= 0:
            raise ValueError("engines: give at least one synthesizer a share > 0")
        return self


def speaker_tag(speaker: str) -> str:
    """An 8-hex-digit name for a speaker, as Speech Commands names its (anonymous) speakers."""
    return hashlib.sha1(speaker.encode()).hexdigest()[:8]


def _pools(cfg: KWSSynthConfig) -> dict[str, VoicePool]:
    voices = [v for v in english_voices() if cfg.engines.get(v.engine, 0) > 0]
    speakers = sorted({v.speaker for v in voices})
    rest, test = split_speakers(speakers, cfg.test_voices)
    train, dev = split_speakers(rest, cfg.dev_voices)
    for group, key in ((test, "test_voices"), (dev, "dev_voices")):
        if not group:
            raise PrunekitError(
                f"{key} {getattr(cfg, key)} matches no speaker of the engines in use "
                f"({sorted(cfg.engines)}): give patterns like 'espeak-ng:*+m3' or 'flite:rms'"
            )
    if not train:
        raise PrunekitError("test_voices and dev_voices hold out every speaker: leave some")
    groups = {"train": train, "dev": dev, "test": test}
    return {s: VoicePool(voices, g, cfg.engines) for s, g in groups.items()}


def _draw(pool: VoicePool, rng: random.Random, by_speaker: bool) -> Voice:
    """A voice: by engine share (training: every engine well represented), or with every
    speaker equally likely (dev / test: no single held-out voice dominates the score)."""
    if not by_speaker:
        return pool.draw(rng)
    speaker = rng.choice(sorted(pool.by_speaker))
    return rng.choice(pool.by_speaker[speaker])


def _conditions(cfg: KWSSynthConfig, rng: random.Random) -> Augmentation:
    """One clip's recording conditions (no speed change: voices already vary in rate)."""
    noise = rng.choice(("white", "pink", "brown")) if rng.random() < cfg.noise_prob else ""
    snr = float(rng.choice(cfg.snr_db)) if noise else 0.0
    rt60 = round(rng.uniform(*cfg.rt60), 3) if rng.random() < cfg.reverb_prob else 0.0
    gain = round(rng.uniform(*cfg.gain_db), 2)
    return Augmentation(1.0, noise, snr, rt60, gain, rng.randrange(2**31))


def plan_kws(cfg: KWSSynthConfig) -> list[PlannedUtterance]:
    """Every clip to render (train, dev, test), then a few babble sentences by training voices.

    A clip's id is its path in the folder without ".wav": WORD/SPEAKER_nohash_N.
    """
    pools = _pools(cfg)
    sizes = {"train": cfg.train_per_class, "dev": cfg.dev_per_class, "test": cfg.test_per_class}
    plan: list[PlannedUtterance] = []
    for split, n in sizes.items():
        rng = random.Random(f"kws-{cfg.seed}-{split}")
        words = [w for w in KEYWORDS for _ in range(n)]
        words += [rng.choice(UNKNOWN_WORDS) for _ in range(n)]
        taken: Counter[tuple[str, str]] = Counter()
        for word in words:
            voice = _draw(pools[split], rng, by_speaker=split != "train")
            tag = speaker_tag(voice.speaker)
            k = taken[word, tag]
            taken[word, tag] += 1
            utt_id = f"{word}/{tag}_nohash_{k}"
            aug = _conditions(cfg, rng)
            plan.append(PlannedUtterance(utt_id, split, word, word, voice.id, split == "test", aug))
    rng = random.Random(f"kws-{cfg.seed}-babble")
    for i in range(8):
        text = " ".join(rng.choice(FILLER) for _ in range(10)) + "."
        voice = pools["train"].draw(rng)
        plan.append(PlannedUtterance(f"babble-{i:02d}", "babble", text, text, voice.id, False))
    return plan


def trim(wave: torch.Tensor, rel_db: float = -40.0, margin: int = 160) -> torch.Tensor:
    """(T,) -> the part between the first and last sample within `rel_db` of the peak (+ margin)."""
    loud = (wave.abs() >= wave.abs().max() * 10 ** (rel_db / 20)).nonzero()
    if loud.numel() == 0:
        return wave
    start, end = int(loud[0]) - margin, int(loud[-1]) + 1 + margin
    return wave[max(0, start) : end]


def place(word: torch.Tensor, generator: torch.Generator, length: int = CLIP) -> torch.Tensor:
    """(T,) -> (length,): the word at a uniformly drawn offset in silence (cut if longer)."""
    word = word[:length]
    out = torch.zeros(length)
    offset = int(torch.randint(length - word.shape[0] + 1, (1,), generator=generator))
    out[offset : offset + word.shape[0]] = word
    return out


def render_clip(utt: PlannedUtterance, babble_pool: list[torch.Tensor]) -> torch.Tensor:
    """One planned clip: synthesized, peak-normalized, trimmed, placed in 1 s, then its conditions.

    Babble sentences are rendered as the audio layer renders utterances.
    """
    if utt.split == "babble":
        return render(utt, babble_pool)
    wave = synthesize(utt.synth_text, Voice.from_id(utt.voice))
    peak = wave.abs().max()
    if peak > 0:
        wave = wave * (PEAK / peak)
    g = torch.Generator().manual_seed(utt.augment.seed ^ 0x5EED)
    clip = place(trim(wave), g)
    return apply_augmentation(clip, utt.augment)[:CLIP]


def clip_path(root: Path, utt: PlannedUtterance) -> Path:
    """Where a planned clip (or babble sentence) goes under the cache folder."""
    if utt.split == "babble":
        return root / "babble" / f"{utt.id}.wav"
    return root / "speech_commands" / f"{utt.id}.wav"


def _write_background(root: Path, babble_paths: list[Path], seed: int) -> None:
    """30 s each of white, pink and brown noise and 6-talker babble, RMS 0.1, as Speech Commands'
    `_background_noise_` holds recorded noise."""
    g = torch.Generator().manual_seed(seed)
    n = NOISE_SECONDS * SAMPLE_RATE
    folder = root / "speech_commands" / BACKGROUND
    for colour in ("white", "pink", "brown"):
        write_wav(
            folder / f"{colour}_noise.wav", NOISE_RMS * coloured_noise(n, colour, generator=g)
        )
    waves = [load_audio(p) for p in babble_paths]
    write_wav(folder / "babble.wav", NOISE_RMS * babble(waves, n, talkers=6, generator=g))


def kws_key(plan: list[PlannedUtterance], cfg: KWSSynthConfig) -> str:
    """Cache key: the audio layer's plan key plus this module's format and background noise."""
    extra = {"format": FORMAT, "noise": [NOISE_SECONDS, NOISE_RMS], "seed": cfg.seed}
    return hashlib.sha256((plan_key(plan) + json.dumps(extra)).encode()).hexdigest()


def synthetic_speech_commands(cfg: KWSSynthConfig | None = None, *, progress: bool = True) -> Path:
    """The synthetic Speech Commands folder of `cfg` (built now if not cached); its path.

    Raises:
        PrunekitError: a missing synthesizer or voice (names the Debian package).
    """
    cfg = cfg or KWSSynthConfig()
    plan = plan_kws(cfg)
    key = kws_key(plan, cfg)
    root = cache_root() / f"kws-{key[:16]}"
    folder = root / "speech_commands"
    if (root / "corpus.json").is_file():
        return folder
    for speaker in sorted({u.voice.split("@")[0] for u in plan}):
        check_voice(Voice.from_id(f"{speaker}@r1.00p1.00"))
    root.mkdir(parents=True, exist_ok=True)
    timing = build(
        plan, root, workers=cfg.workers, progress=progress, render_fn=render_clip,
        path_fn=clip_path, desc="keyword clips",
    )  # fmt: skip
    _write_background(root, [clip_path(root, u) for u in plan if u.split == "babble"], cfg.seed)
    for split, name in (("dev", "validation_list.txt"), ("test", "testing_list.txt")):
        write_text(folder / name, "".join(f"{u.id}.wav\n" for u in plan if u.split == split))
    write_json(root / "corpus.json", _meta(plan, cfg, key, timing))  # last: "built"
    return folder


def _meta(
    plan: list[PlannedUtterance], cfg: KWSSynthConfig, key: str, timing: dict[str, float]
) -> dict[str, Any]:
    clips = [u for u in plan if u.split != "babble"]
    per_split = {}
    for split in ("train", "dev", "test"):
        utts = [u for u in clips if u.split == split]
        speakers = {u.voice.split("@")[0] for u in utts}
        engines = Counter(s.split(":")[0] for s in speakers)
        per_split[split] = {"clips": len(utts), "speakers": len(speakers), "engines": engines}
    return {
        "key": key,
        "config": cfg.model_dump(mode="json"),
        "splits": per_split,
        "build_seconds": timing["seconds"],
        "build_sessions": timing["sessions"],
        "rendered_now": timing["rendered"],
    }
