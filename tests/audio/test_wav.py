import logging
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.audio.wav import load_audio, read_wav, write_wav
from prunekit.errors import PrunekitError


def _tone(n: int = 8000, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(torch.arange(n) * 0.05)


def _write_raw(path: Path, data: bytes, *, channels: int = 1, width: int = 2, rate: int = 16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(data)


def test_round_trip_16_bit(tmp_path):
    x = _tone()
    write_wav(tmp_path / "a.wav", x)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and y.dtype == torch.float32 and y.shape == x.shape
    assert (y - x).abs().max() < 1 / 32767 + 1e-6
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temp file left


@pytest.mark.parametrize(("width", "dtype", "scale"), [(1, np.uint8, 128), (4, np.int32, 2**31)])
def test_reads_8_and_32_bit_pcm(tmp_path, width, dtype, scale):
    x = _tone().numpy()
    ints = (x * (scale - 1)).astype(np.int64) + (128 if width == 1 else 0)
    _write_raw(tmp_path / "a.wav", ints.astype(dtype).tobytes(), width=width)
    y, _ = read_wav(tmp_path / "a.wav")
    assert np.abs(y.numpy() - x).max() < 2.0 / scale * 2


def test_reads_24_bit_and_flac_through_sox(tmp_path):
    write_wav(tmp_path / "a.wav", _tone())
    for args, name in ((["-b", "24"], "b24.wav"), ([], "a.flac")):
        subprocess.run(["sox", str(tmp_path / "a.wav"), *args, str(tmp_path / name)], check=True)
        y, rate = read_wav(tmp_path / name)
        assert rate == 16000 and (y - _tone()).abs().max() < 1e-4


def test_float_wav_is_decoded_by_sox(tmp_path):
    write_wav(tmp_path / "a.wav", _tone())
    out = tmp_path / "f.wav"
    subprocess.run(["sox", str(tmp_path / "a.wav"), "-e", "floating-point", str(out)], check=True)
    y, _ = read_wav(out)
    assert (y - _tone()).abs().max() < 1e-4


def test_other_rate_is_resampled_with_one_warning(tmp_path, caplog):
    write_wav(tmp_path / "a.wav", _tone(44100), sample_rate=44100)
    with caplog.at_level(logging.WARNING, logger="prunekit.audio.wav"):
        y = load_audio(tmp_path / "a.wav")
    assert y.shape[0] == 16000
    [record] = caplog.records
    assert record.getMessage() == f"{tmp_path / 'a.wav'} is 44100 Hz: resampled to 16000 Hz"


def test_stereo_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "st.wav"
    _write_raw(path, np.zeros(200, dtype=np.int16).tobytes(), channels=2)
    with pytest.raises(PrunekitError) as err:
        read_wav(path)
    assert str(err.value) == (
        f"{path} has 2 channels, prunekit needs mono: mix it down with "
        f"`sox {path} -c 1 OUT.wav` (or keep one channel with `remix 1`)"
    )


def test_empty_file_and_empty_wav(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(PrunekitError, match=r"empty\.wav is an empty file: record it again"):
        read_wav(tmp_path / "empty.wav")
    _write_raw(tmp_path / "silent.wav", b"")
    with pytest.raises(PrunekitError) as err:
        read_wav(tmp_path / "silent.wav")
    assert str(err.value) == (
        f"{tmp_path / 'silent.wav'} has no audio samples (0 s): record it again or remove it"
    )


def test_corrupt_file_names_the_fix(tmp_path):
    path = tmp_path / "junk.wav"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(PrunekitError) as err:
        read_wav(path)
    msg = str(err.value)
    assert msg.startswith(f"{path} is not readable audio (")
    assert msg.endswith(
        "re-export it as 16-bit PCM mono wav, e.g. `sox IN -r 16000 -c 1 -b 16 OUT.wav`"
    )
    assert "\n" not in msg


def test_missing_file_and_missing_sox(tmp_path, monkeypatch):
    with pytest.raises(PrunekitError, match="does not exist: pass the path of a wav or flac"):
        read_wav(tmp_path / "nope.wav")
    path = tmp_path / "x.flac"
    path.write_bytes(b"fLaC....")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(
        PrunekitError,
        match=r"sox is not installed to decode it: install sox \(sudo apt-get install sox\)",
    ):
        read_wav(path)


def test_write_wav_clips_and_refuses_stereo(tmp_path):
    write_wav(tmp_path / "c.wav", torch.tensor([2.0, -2.0, 0.0]))
    y, _ = read_wav(tmp_path / "c.wav")
    assert y.tolist() == pytest.approx([1.0, -1.0, 0.0], abs=1e-4)
    with pytest.raises(ValueError, match="mono"):
        write_wav(tmp_path / "d.wav", torch.zeros(2, 10))
