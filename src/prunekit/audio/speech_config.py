"""The `speech:` section of a recipe: where the audio comes from and how it is rendered."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_UNSEEN = [
    "espeak-ng:en-029*",
    "espeak-ng:*+m3",
    "espeak-ng:*+f2",
    "flite:rms",
    "festival:ked_diphone",
]
"""Speakers (fnmatch patterns on `Voice.speaker`) held out of train and dev: the Caribbean accent,
two voice variants in every accent, one flite and one festival voice (30 of the 128 espeak-ng
speakers, 1 of 4 flite, 1 of 3 festival)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AugmentConfig(_Strict):
    """How each training utterance is perturbed (dev and test stay clean).

    Every training utterance gets a speed factor drawn from `speeds`; with probability
    `noise_prob` noise of a kind drawn from `noises` at an SNR drawn from `snr_db`; with
    probability `reverb_prob` a synthetic room with an RT60 drawn uniformly from `rt60`; and a
    level change drawn uniformly from `gain_db`.
    """

    speeds: list[float] = Field(default_factory=lambda: [0.9, 1.0, 1.1], min_length=1)
    noise_prob: float = Field(0.5, ge=0, le=1)
    noises: list[Literal["white", "pink", "brown", "babble"]] = Field(
        default_factory=lambda: ["white", "pink", "brown", "babble"], min_length=1
    )
    snr_db: list[float] = Field(default_factory=lambda: [5.0, 10.0, 15.0, 20.0], min_length=1)
    reverb_prob: float = Field(0.25, ge=0, le=1)
    rt60: tuple[float, float] = (0.15, 0.5)
    gain_db: tuple[float, float] = (-12.0, 0.0)

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        if any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ValueError(f"speeds {self.speeds} must each be in [0.5, 2]")
        if not 0 < self.rt60[0] <= self.rt60[1] <= 2.0:
            raise ValueError(f"rt60 {self.rt60} must be (low, high) with 0 < low <= high <= 2 s")
        if self.gain_db[0] > self.gain_db[1]:
            raise ValueError(f"gain_db {self.gain_db} must be (low, high) with low <= high")
        return self


class SpeechConfig(_Strict):
    """A speech corpus: synthesized from a text corpus's splits, or a folder of recordings.

    Attributes:
        source: "synthetic", or the path of recordings in LibriSpeech layout (SPEAKER/CHAPTER/
            *.flac + *.trans.txt), Kaldi layout (wav.scp + text [+ utt2spk]) or a CSV manifest
            (path,text[,speaker]); a folder with train/, dev/ and test/ inside gives the splits,
            otherwise 90 / 5 / 5 % of the utterances are drawn by a hash of their ids.
        corpus: the LM text corpus the synthetic transcripts come from (None: the recipe's
            `data.corpus`, or "shakespeare" outside a recipe).
        train_utterances, dev_utterances, test_utterances: synthetic sizes; test is half
            training voices, half unseen voices.
        min_words, max_words: utterance length in spoken words (see `audio.transcripts`).
        engines: relative share of utterances per synthesizer.
        unseen_voices: speaker patterns kept out of train and dev (`DEFAULT_UNSEEN`).
        augment: training-set augmentation.
        n_mels: log-mel bands of the features.
        workers: processes that render the corpus.
        seed: seed of every random draw (texts, voices, augmentation).
    """

    source: str = "synthetic"
    corpus: str | None = None
    train_utterances: int = Field(3000, ge=1)
    dev_utterances: int = Field(250, ge=1)
    test_utterances: int = Field(500, ge=2)
    min_words: int = Field(8, ge=1)
    max_words: int = Field(30, ge=1)
    engines: dict[Literal["espeak-ng", "flite", "festival"], float] = Field(
        default_factory=lambda: {"espeak-ng": 0.5, "flite": 0.25, "festival": 0.25}
    )
    unseen_voices: list[str] = Field(default_factory=lambda: list(DEFAULT_UNSEEN))
    augment: AugmentConfig = AugmentConfig()
    n_mels: int = Field(80, ge=1)
    workers: int = Field(2, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SpeechConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words={self.min_words} must be <= max_words={self.max_words}")
        if not self.engines or any(w < 0 for w in self.engines.values()):
            raise ValueError("engines must give each synthesizer a share >= 0")
        if sum(self.engines.values()) <= 0:
            raise ValueError("engines: give at least one synthesizer a share > 0")
        return self
