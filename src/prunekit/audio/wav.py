"""Audio files in and out: 16-bit PCM wav written atomically; wav, flac and more read as (T,) floats.

In memory a waveform is a 1-D float32 tensor in [-1, 1] (mono). PCM wav is read by Python's
`wave` module; other formats (flac, float wav, ...) are converted by `sox` into a temporary wav.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch

from prunekit.atomic import write_with
from prunekit.audio.resample import resample
from prunekit.errors import PrunekitError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""The sample rate of every waveform prunekit computes features from."""

_PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}
_FIX = "re-export it as 16-bit PCM mono wav, e.g. `sox IN -r 16000 -c 1 -b 16 OUT.wav`"


def _corrupt(path: Path, why: str) -> PrunekitError:
    return PrunekitError(f"{path} is not readable audio ({why}): {_FIX}")


def _pcm_to_float(data: bytes, width: int) -> np.ndarray:
    """Interleaved little-endian PCM bytes of `width` bytes per sample -> float32 in [-1, 1]."""
    if width == 3:  # 24-bit: widen to int32 with the sign in the top byte
        raw = np.frombuffer(data[: len(data) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        ints = (raw[:, 0].astype(np.int32) << 8) | (raw[:, 1].astype(np.int32) << 16)
        ints |= raw[:, 2].astype(np.int32) << 24
        return (ints / 2.0**31).astype(np.float32)
    ints = np.frombuffer(data[: len(data) // width * width], dtype=_PCM_DTYPES[width])
    if width == 1:  # 8-bit wav is unsigned
        return ((ints.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    return (ints / float(2 ** (8 * width - 1))).astype(np.float32)


def _read_pcm_wav(path: Path) -> tuple[np.ndarray, int, int]:
    """(interleaved float32 samples, sample rate, channels) of a PCM wav; wave.Error if not one."""
    with wave.open(str(path), "rb") as f:
        channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
        data = f.readframes(f.getnframes())
    if width not in (1, 2, 3, 4):
        raise wave.Error(f"{8 * width}-bit samples")
    return _pcm_to_float(data, width), rate, channels


def _convert_with_sox(path: Path, why_not_wav: str) -> tuple[np.ndarray, int, int]:
    """Decode any format sox reads (flac, float or 24-bit wav, ...) through a 16-bit PCM wav."""
    if shutil.which("sox") is None:
        raise PrunekitError(
            f"{path} is not PCM wav ({why_not_wav}) and sox is not installed to decode it: "
            "install sox (sudo apt-get install sox) or convert the file to 16-bit PCM wav"
        )
    with tempfile.TemporaryDirectory(prefix="prunekit-sox-") as tmp:
        out = Path(tmp) / "audio.wav"
        proc = subprocess.run(
            ["sox", str(path), "-e", "signed-integer", "-b", "16", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["sox failed"])[-1]
            raise _corrupt(path, why.removeprefix("sox FAIL formats: "))
        try:
            return _read_pcm_wav(out)
        except (wave.Error, EOFError) as exc:
            raise _corrupt(path, str(exc)) from None


def read_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a mono audio file (PCM wav natively; flac and other formats through sox).

    Returns:
        (wave (T,) float32 in [-1, 1], sample rate in Hz).

    Raises:
        PrunekitError: a missing, empty, corrupt or unsupported file, or more than one channel.
    """
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(
            f"audio file {path} does not exist: pass the path of a wav or flac file"
        )
    try:
        samples, rate, channels = _read_pcm_wav(path)
    except (wave.Error, EOFError) as exc:
        if path.stat().st_size == 0:
            raise PrunekitError(f"{path} is an empty file: record it again or remove it") from None
        samples, rate, channels = _convert_with_sox(path, str(exc) or "truncated header")
    if channels != 1:
        raise PrunekitError(
            f"{path} has {channels} channels, prunekit needs mono: mix it down with "
            f"`sox {path} -c 1 OUT.wav` (or keep one channel with `remix 1`)"
        )
    if samples.size == 0:
        raise PrunekitError(f"{path} has no audio samples (0 s): record it again or remove it")
    return torch.from_numpy(samples.copy()), rate


def load_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, *, warn: bool = True
) -> torch.Tensor:
    """Read a mono audio file at `sample_rate`, resampling (with one warning) if it has another.

    Args:
        path: a wav / flac file.
        sample_rate: the wanted rate in Hz.
        warn: log a warning naming the file and both rates when resampling.

    Returns:
        (T,) float32 waveform in [-1, 1].

    Raises:
        PrunekitError: as `read_wav`.
    """
    wave_, rate = read_wav(path)
    if rate != sample_rate:
        if warn:
            log.warning("%s is %d Hz: resampled to %d Hz", path, rate, sample_rate)
        wave_ = resample(wave_, rate, sample_rate)
    return wave_


def to_pcm16(wave_: torch.Tensor) -> bytes:
    """(T,) float waveform -> little-endian 16-bit PCM bytes (clipped to [-1, 1])."""
    ints = (wave_.detach().to(torch.float32).clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16)
    return ints.numpy().astype("<i2").tobytes()


def write_wav(path: str | Path, wave_: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a (T,) waveform as 16-bit PCM mono wav, atomically (no half-written file on a crash)."""
    if wave_.dim() != 1:
        raise ValueError(f"write_wav takes a (T,) mono waveform, got shape {tuple(wave_.shape)}")
    data = to_pcm16(wave_)

    def _write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(sample_rate)
            f.writeframes(data)

    write_with(path, _write)


def duration(path: str | Path) -> float:
    """Seconds of audio in a PCM wav file (reads the header only)."""
    with wave.open(str(path), "rb") as f:
        return f.getnframes() / f.getframerate()
