"""Plan a synthetic speech corpus: which text each utterance says, in which voice, how perturbed.

The plan is a pure function of the `SpeechConfig` and the text corpus, so it can be hashed into
a cache key before anything is synthesized. Texts: train utterances from the LM corpus's train
split, dev from its valid split, test from its test split (`audio.transcripts` cuts them).
Voices: speakers matching `SpeechConfig.unseen_voices` never speak in train or dev; half of the
test utterances are spoken by them, half by the other speakers. A test utterance is marked
`unseen` when its speaker says nothing in train (all held-out speakers, and in a tiny corpus
any other speaker that happened not to be drawn for training).
"""

from __future__ import annotations

import fnmatch
import random
from collections import defaultdict
from dataclasses import dataclass, replace

from prunekit.audio.augment import Augmentation
from prunekit.audio.speech_config import AugmentConfig, SpeechConfig
from prunekit.audio.synth import Voice, english_voices
from prunekit.audio.transcripts import synth_text, utterance_texts
from prunekit.data.spoken import spoken_form
from prunekit.errors import PrunekitError

BABBLE_CLIPS = 12
"""Utterances rendered (from unused train texts, by training speakers) to make babble noise from
(fewer for a small corpus: one per 50 training utterances, at least 2)."""

SPLITS = {"train": "train", "dev": "valid", "test": "test"}
"""Speech split -> the text corpus split its transcripts come from."""


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance to render: `synth_text` spoken by `voice`, then `augment`, labelled `text`."""

    id: str
    split: str  # "train", "dev", "test" or "babble"
    text: str  # spoken form: the label
    synth_text: str  # what the synthesizer reads
    voice: str  # Voice.id
    unseen: bool  # spoken by a speaker held out of training
    augment: Augmentation = Augmentation()


def split_speakers(speakers: list[str], patterns: list[str]) -> tuple[list[str], list[str]]:
    """(seen, unseen) speakers: unseen ones match any fnmatch pattern in `patterns`."""
    unseen = [s for s in speakers if any(fnmatch.fnmatchcase(s, p) for p in patterns)]
    held = set(unseen)
    return [s for s in speakers if s not in held], unseen


class VoicePool:
    """Draw voices: an engine by its share, a speaker of that engine uniformly, then a rate/pitch."""

    def __init__(self, voices: list[Voice], speakers: list[str], engines: dict[str, float]):
        wanted = set(speakers)
        self.by_speaker: dict[str, list[Voice]] = defaultdict(list)
        for v in voices:
            if v.speaker in wanted and engines.get(v.engine, 0) > 0:
                self.by_speaker[v.speaker].append(v)
        self.by_engine: dict[str, list[str]] = defaultdict(list)
        for speaker, vs in self.by_speaker.items():
            self.by_engine[vs[0].engine].append(speaker)
        self.engines = {e: engines[e] for e in self.by_engine}

    def __bool__(self) -> bool:
        return bool(self.by_speaker)

    def draw(self, rng: random.Random) -> Voice:
        names = sorted(self.engines)
        engine = rng.choices(names, weights=[self.engines[e] for e in names])[0]
        speaker = rng.choice(self.by_engine[engine])
        return rng.choice(self.by_speaker[speaker])


def draw_augmentation(cfg: AugmentConfig, rng: random.Random) -> Augmentation:
    """One training utterance's perturbation (see `AugmentConfig`)."""
    speed = rng.choice(cfg.speeds)
    noise = rng.choice(cfg.noises) if rng.random() < cfg.noise_prob else ""
    snr = float(rng.choice(cfg.snr_db)) if noise else 0.0
    rt60 = round(rng.uniform(*cfg.rt60), 3) if rng.random() < cfg.reverb_prob else 0.0
    gain = round(rng.uniform(*cfg.gain_db), 2)
    return Augmentation(speed, noise, snr, rt60, gain, rng.randrange(2**31))


def _pools(cfg: SpeechConfig) -> tuple[VoicePool, VoicePool]:
    voices = [v for v in english_voices() if cfg.engines.get(v.engine, 0) > 0]
    speakers = sorted({v.speaker for v in voices})
    seen, unseen = split_speakers(speakers, cfg.unseen_voices)
    if not unseen:
        raise PrunekitError(
            f"speech.unseen_voices {cfg.unseen_voices} matches no speaker of the engines in use "
            f"({sorted(cfg.engines)}): give patterns like 'flite:rms' or 'espeak-ng:*+m3'"
        )
    if not seen:
        raise PrunekitError(
            f"speech.unseen_voices {cfg.unseen_voices} holds out every speaker: "
            "leave some for training"
        )
    return VoicePool(voices, seen, cfg.engines), VoicePool(voices, unseen, cfg.engines)


def _sample_texts(
    candidates: list[str], k: int, rng: random.Random, what: str
) -> tuple[list[str], list[int]]:
    if k > len(candidates):
        raise PrunekitError(
            f"{what} has {len(candidates)} utterances, fewer than the {k} asked for: "
            "lower the speech utterance count or use a bigger corpus"
        )
    picked = sorted(rng.sample(range(len(candidates)), k))
    return [candidates[i] for i in picked], picked


def plan_synthetic(corpus_texts: dict[str, str], cfg: SpeechConfig) -> list[PlannedUtterance]:
    """Every utterance of the corpus, in order: train, dev, test, then the babble clips.

    Args:
        corpus_texts: {"train", "valid", "test"} -> raw text of that split of the LM corpus.
        cfg: the speech config (sizes, voice split, augmentation, seed).
    """
    seen, unseen = _pools(cfg)
    sizes = {"train": cfg.train_utterances, "dev": cfg.dev_utterances}
    sizes["test"] = cfg.test_utterances
    plan: list[PlannedUtterance] = []
    unused_train: list[str] = []
    for split, source in SPLITS.items():
        rng = random.Random(f"{cfg.seed}-{split}")
        candidates = utterance_texts(corpus_texts[source], cfg.min_words, cfg.max_words)
        texts, picked = _sample_texts(candidates, sizes[split], rng, f"the {source} split")
        if split == "train":
            chosen = set(picked)
            unused_train = [c for i, c in enumerate(candidates) if i not in chosen]
        flags = [False] * len(texts)
        if split == "test":
            flags = [False] * (len(texts) - len(texts) // 2) + [True] * (len(texts) // 2)
            rng.shuffle(flags)
        for i, (text, is_unseen) in enumerate(zip(texts, flags, strict=True)):
            voice = (unseen if is_unseen else seen).draw(rng)
            aug = draw_augmentation(cfg.augment, rng) if split == "train" else Augmentation()
            plan.append(
                PlannedUtterance(
                    f"{split}-{i:05d}",
                    split,
                    spoken_form(text),
                    synth_text(text),
                    voice.id,
                    is_unseen,
                    aug,
                )
            )
    heard = {u.voice.split("@")[0] for u in plan if u.split == "train"}
    plan = [
        replace(u, unseen=u.voice.split("@")[0] not in heard) if u.split == "test" else u
        for u in plan
    ]
    clips = min(BABBLE_CLIPS, max(2, cfg.train_utterances // 50))
    return plan + _plan_babble(unused_train, seen, cfg.seed, clips)


def _plan_babble(
    texts: list[str], seen: VoicePool, seed: int, clips: int
) -> list[PlannedUtterance]:
    """Clips of train-split text no utterance uses, by training speakers: babble noise material."""
    rng = random.Random(f"{seed}-babble")
    picked = rng.sample(texts, min(clips, len(texts)))
    return [
        PlannedUtterance(
            f"babble-{i:02d}", "babble", spoken_form(t), synth_text(t), seen.draw(rng).id, False
        )
        for i, t in enumerate(picked)
    ]
