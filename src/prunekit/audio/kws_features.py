"""Google-12 keyword clips -> 32 log-mel x 99 frame features per split, augmented, cached.

From a Speech Commands folder (real, or `audio.kws_synth`'s synthetic one), as TensorFlow's
`input_data.py` builds the 12-class task, with its defaults:

- every keyword clip; unknown clips drawn from the other words, and silence clips cut from
  `_background_noise_`, each 10 % of the split's keyword clips, so unknown and silence are about
  as frequent as one keyword;
- every clip made exactly 1 s (16,000 samples): shorter ones padded with silence at the end,
  longer ones cut; one warning line says how many;
- training clips only: a time shift of up to +-100 ms (zero fill), and with probability 0.8 a
  random 1 s of a background recording at 5-20 dB SNR (drawn afresh per clip, once: the
  features are fixed tensors); silence clips (every split) are background noise at -50 to -20
  dBFS RMS. Dev and test clips are left as recorded (TensorFlow's validation and test);
- features: 32 log-mel bands, 25 ms window, 10 ms shift (`audio.features.LogMel`), the clip
  zero-padded by 5 ms so there are 99 frames, as python_speech_features (EdgeML's KWS
  featurizer) frames 1 s.

Cached as one `FeatureSet` per split (texts: the clip's word or "_silence_"; ids: its name;
voices: its speaker) under `$PRUNEKIT_CACHE/speech/kws-features-KEY/`, KEY a hash of the clips'
names, sizes and modification times, the settings and the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from prunekit.audio.corpus import cache_root
from prunekit.audio.features import LogMel
from prunekit.audio.featureset import FeatureSet
from prunekit.audio.kws_words import KEYWORDS, LABELS, SILENCE, label_of
from prunekit.audio.resample import resample
from prunekit.audio.speech_commands import Clip, background_files, read_speech_commands
from prunekit.audio.wav import SAMPLE_RATE, read_wav
from prunekit.export.timing import num_threads

log = logging.getLogger(__name__)

FORMAT = "kws-logmel-1"
CLIP = SAMPLE_RATE
N_MELS = 32
FRAMES = 99
EXTRA_PERCENT = 10.0  # unknown and silence, each, as % of the keyword clips
SHIFT_MS = 100
BACKGROUND_PROB = 0.8
SNR_DB = (5.0, 20.0)
SILENCE_DBFS = (-50.0, -20.0)
SPLITS = ("train", "dev", "test")
CHUNK = 256


@dataclass
class KWSFeatures:
    """Features (N, 99, 32) and labels (N,) per split, with facts about them."""

    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    meta: dict[str, Any]

    def normalized(self) -> dict[str, torch.Tensor]:
        """x of every split with each band standardized by the training set's mean and std."""
        mean = torch.tensor(self.meta["train_mean"])  # (32,)
        std = torch.tensor(self.meta["train_std"]).clamp(min=1e-5)
        return {s: (x - mean) / std for s, x in self.x.items()}


@dataclass
class _Counts:
    padded: int = 0
    cut: int = 0
    resampled: int = 0
    first: str = ""

    def warn(self, total: int) -> None:
        if self.padded or self.cut:
            log.warning(
                "%d of %d clips were not 1 s long: %d shorter ones padded with silence, %d longer "
                "ones cut to 1 s (first: %s)", self.padded + self.cut, total, self.padded,
                self.cut, self.first,
            )  # fmt: skip
        if self.resampled:
            log.warning("%d clips were not at 16 kHz: resampled", self.resampled)


def _read(path: Path, counts: _Counts) -> torch.Tensor:
    """(16000,) float waveform of a clip: resampled to 16 kHz, padded or cut to 1 s."""
    wave, rate = read_wav(path)
    if rate != SAMPLE_RATE:
        counts.resampled += 1
        wave = resample(wave, rate, SAMPLE_RATE)
    if wave.shape[0] != CLIP:
        counts.first = counts.first or str(path)
        if wave.shape[0] < CLIP:
            counts.padded += 1
            wave = torch.nn.functional.pad(wave, (0, CLIP - wave.shape[0]))
        else:
            counts.cut += 1
            wave = wave[:CLIP]
    return wave


def _excerpt(noises: list[torch.Tensor], rng: random.Random) -> torch.Tensor:
    """A random 1 s of a random background recording, at unit RMS."""
    noise = noises[rng.randrange(len(noises))]
    if noise.shape[0] < CLIP:
        noise = noise.repeat(math.ceil(CLIP / noise.shape[0]))
    start = rng.randrange(noise.shape[0] - CLIP + 1)
    piece = noise[start : start + CLIP]
    return piece / piece.pow(2).mean().sqrt().clamp(min=1e-8)


def silence_clip(noises: list[torch.Tensor], rng: random.Random) -> torch.Tensor:
    """(16000,) background noise at a random level (SILENCE_DBFS RMS)."""
    return _excerpt(noises, rng) * 10 ** (rng.uniform(*SILENCE_DBFS) / 20)


def augment(wave: torch.Tensor, noises: list[torch.Tensor], rng: random.Random) -> torch.Tensor:
    """Training augmentation of a (16000,) clip: time shift, then background noise (see module)."""
    shift = rng.randint(-SHIFT_MS * SAMPLE_RATE // 1000, SHIFT_MS * SAMPLE_RATE // 1000)
    out = torch.zeros_like(wave)
    if shift >= 0:
        out[shift:] = wave[: CLIP - shift]
    else:
        out[:shift] = wave[-shift:]
    if rng.random() < BACKGROUND_PROB:
        power = out.pow(2).mean().clamp(min=1e-10)
        snr = rng.uniform(*SNR_DB)
        out = out + _excerpt(noises, rng) * torch.sqrt(power / 10 ** (snr / 10))
    return out.clamp(-1.0, 1.0)


def _select(clips: list[Clip], rng: random.Random) -> list[Clip | None]:
    """Keyword clips, a sample of unknown clips, and silence slots (None), 10 % each."""
    keywords = [c for c in clips if c.word in KEYWORDS]
    unknown = [c for c in clips if c.word not in KEYWORDS]
    extra = math.ceil(len(keywords) * EXTRA_PERCENT / 100)
    picked = rng.sample(unknown, min(extra, len(unknown)))
    return [*keywords, *sorted(picked, key=lambda c: c.name), *([None] * extra)]


def _features(waves: list[torch.Tensor], fe: LogMel) -> torch.Tensor:
    """(N, 16000) waves -> (N, 99, 32) log-mels (each clip zero-padded by 80 samples)."""
    batch = torch.nn.functional.pad(torch.stack(waves), (0, (FRAMES - 1) * fe.hop + fe.win - CLIP))
    with torch.no_grad():
        return fe(batch)


def _key(splits: dict[str, list[Clip]], noises: list[Path], seed: int) -> str:
    digest = hashlib.sha256(json.dumps([FORMAT, seed, N_MELS, FRAMES]).encode())
    for split in SPLITS:
        for c in splits[split]:
            st = c.path.stat()
            digest.update(json.dumps([split, c.name, st.st_size, st.st_mtime_ns]).encode())
    for p in noises:
        st = p.stat()
        digest.update(json.dumps([p.name, st.st_size, st.st_mtime_ns]).encode())
    return digest.hexdigest()


def _build_split(
    items: list[Clip | None], train: bool, noises: list[torch.Tensor], rng: random.Random,
    counts: _Counts, bar: tqdm,
) -> torch.Tensor:  # fmt: skip
    fe = LogMel(n_mels=N_MELS)
    chunks = []
    for start in range(0, len(items), CHUNK):
        waves = []
        for clip in items[start : start + CHUNK]:
            if clip is None:
                waves.append(silence_clip(noises, rng))
            else:
                wave = _read(clip.path, counts)
                waves.append(augment(wave, noises, rng) if train else wave)
            bar.update()
        chunks.append(_features(waves, fe))
    return torch.cat(chunks)  # (N, 99, 32)


def kws_features(root: str | Path, *, seed: int = 0, progress: bool = True) -> KWSFeatures:
    """The Google-12 features of the Speech Commands folder `root` (computed once, cached).

    Raises:
        PrunekitError: a bad folder (see `read_speech_commands`) or unreadable audio.
    """
    root = Path(root).expanduser().resolve()
    splits = read_speech_commands(root)
    noise_paths = background_files(root)
    key = _key(splits, noise_paths, seed)
    folder = cache_root() / f"kws-features-{key[:16]}"
    paths = {s: folder / f"{s}.safetensors" for s in SPLITS}
    if not all(p.is_file() for p in paths.values()):
        _compute(root, splits, noise_paths, seed, paths, progress)
    sets = {s: FeatureSet.load(p) for s, p in paths.items()}
    x = {s: fs.feats.reshape(len(fs), FRAMES, N_MELS) for s, fs in sets.items()}
    y = {s: torch.tensor([label_of(t) if t != SILENCE else 0 for t in fs.texts]) for s, fs in sets.items()}  # fmt: skip
    return KWSFeatures(x, y, {**sets["train"].meta, "key": key, "cache": str(folder)})


def _compute(
    root: Path, splits: dict[str, list[Clip]], noise_paths: list[Path], seed: int,
    paths: dict[str, Path], progress: bool,
) -> None:  # fmt: skip
    rng = random.Random(f"kws-features-{seed}")
    counts = _Counts()
    noises = [_load_noise(p, counts) for p in noise_paths]
    chosen = {s: _select(splits[s], rng) for s in SPLITS}
    total = sum(len(v) for v in chosen.values())
    bar = tqdm(total=total, unit="clip", desc="keyword features", disable=not progress)
    feats = {}
    with num_threads(1):
        for split in SPLITS:
            feats[split] = _build_split(chosen[split], split == "train", noises, rng, counts, bar)
    bar.close()
    counts.warn(sum(1 for items in chosen.values() for c in items if c is not None))
    train = feats["train"].reshape(-1, N_MELS).double()
    meta = {
        "source": str(root),
        "seed": seed,
        "labels": list(LABELS),
        "train_mean": train.mean(0).tolist(),
        "train_std": train.std(0).tolist(),
        "padded": counts.padded,
        "cut": counts.cut,
        "sizes": {s: len(chosen[s]) for s in SPLITS},
        "speakers": {s: len({c.speaker for c in splits[s]}) for s in SPLITS},
    }
    for split in SPLITS:
        items = chosen[split]
        texts = [SILENCE if c is None else c.word for c in items]
        ids = [f"{SILENCE}/{i}" if c is None else c.name for i, c in enumerate(items)]
        voices = ["" if c is None else c.speaker for c in items]
        fs = FeatureSet.from_list(list(feats[split]), texts, ids, voices, {**meta, "split": split})
        fs.save(paths[split])


def _load_noise(path: Path, counts: _Counts) -> torch.Tensor:
    wave, rate = read_wav(path)
    if rate != SAMPLE_RATE:
        counts.resampled += 1
        wave = resample(wave, rate, SAMPLE_RATE)
    return wave
