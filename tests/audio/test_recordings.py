import logging
import subprocess
from pathlib import Path

import pytest
import torch

from prunekit.audio.corpus import speech_corpus
from prunekit.audio.corpus_features import speech_features
from prunekit.audio.recordings import read_recordings
from prunekit.audio.speech_config import SpeechConfig
from prunekit.audio.wav import write_wav
from prunekit.errors import PrunekitError


def _audio(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = torch.arange(round(seconds * rate)) / rate
    wav = path.with_suffix(".wav")
    write_wav(wav, 0.3 * torch.sin(2 * torch.pi * 300 * t), rate)
    if path.suffix == ".flac":
        subprocess.run(["sox", str(wav), str(path)], check=True)
        wav.unlink()
    return path


def _librispeech(root: Path, speakers=("19", "26"), per=3) -> Path:
    for spk in speakers:
        chap = root / spk / "198"
        lines = []
        for i in range(per):
            utt = f"{spk}-198-{i:04d}"
            _audio(chap / f"{utt}.flac")
            lines.append(f"{utt} NUMBER {i} IS THE TOM'S WORD")
        (chap / f"{spk}-198.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def _kaldi(root: Path, rate: int = 16000) -> Path:
    root.mkdir(parents=True)
    scp, text, spk = [], [], []
    for i in range(4):
        utt = f"spk{i % 2}-utt{i}"
        _audio(root / "audio" / f"{utt}.wav", rate=rate)
        scp.append(f"{utt} audio/{utt}.wav")
        text.append(f"{utt} Hello, World {i}!")
        spk.append(f"{utt} spk{i % 2}")
    for name, rows in (("wav.scp", scp), ("text", text), ("utt2spk", spk)):
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def _csv(path: Path, rows: list[str], header: str = "path,text,speaker") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for row in rows:
        _audio(path.parent / row.split(",")[0])
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_librispeech_layout_in_split_folders(tmp_path):
    root = tmp_path / "LS"
    _librispeech(root / "train", ("19", "26"))
    _librispeech(root / "dev", ("19",), per=1)
    _librispeech(root / "test", ("19", "40"), per=1)
    splits = read_recordings(root)
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [6, 1, 2]
    u = splits["train"][0]
    assert (u.id, u.speaker, u.text) == ("19-198-0000", "19", "number zero is the tom's word")
    assert u.path.suffix == ".flac"
    assert {x.speaker: x.unseen for x in splits["test"]} == {"19": False, "40": True}


def test_kaldi_layout_split_by_hash_and_resampled_features(tmp_path, caplog):
    root = _kaldi(tmp_path / "kaldi", rate=8000)
    splits = read_recordings(root)
    assert sum(len(v) for v in splits.values()) == 4
    assert all(len(splits[s]) == 1 for s in ("dev", "test"))
    assert splits["train"][0].text.startswith("hello world ")
    cfg = SpeechConfig(source=str(root), n_mels=32)
    with caplog.at_level(logging.WARNING):
        feats = speech_features(cfg, progress=False)
    assert "4 file(s) not at 16000 Hz were resampled (first: " in caplog.text
    assert feats["train"].feats.shape[1] == 32
    assert feats["train"].lengths.tolist() == [48] * 2  # 0.5 s -> 48 frames of 10 ms
    assert feats["test"].meta["seconds"] == pytest.approx(0.5)


def test_csv_manifest_replaces_the_synthetic_corpus(tmp_path):
    rows = [f"clips/a{i}.wav,Line number {i}.,{'ann' if i < 8 else 'bob'}" for i in range(10)]
    manifest = _csv(tmp_path / "data" / "all.csv", rows)
    corpus = speech_corpus(SpeechConfig(source=str(manifest)), progress=False)
    assert corpus.name == "all" and sum(len(v) for v in corpus.splits.values()) == 10
    assert corpus.splits["train"][0].id.startswith("clips/a")
    feats = speech_features(SpeechConfig(source=str(manifest)), progress=False)
    assert feats["dev"].texts[0].startswith("line number ")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d.mkdir(), "has no recordings in a known layout: use LibriSpeech"),
        (
            lambda d: _csv(d / "m.csv", ["a.wav,hi"], header="file,words"),
            "needs a header line `path,text` or `path,text,speaker` (found file,words): add it",
        ),
        (
            lambda d: _csv(d / "m.csv", ["a.wav,señor", "b.wav,x", "c.wav,y"]),
            "has the letter 'ñ', which the acoustic model cannot emit (a-z and ' only): "
            "transliterate it to ASCII",
        ),
        (lambda d: _csv(d / "m.csv", ["a.wav,!!!"]), "has no words ('!!!'): fix it or drop"),
        (
            lambda d: _csv(d / "m.csv", ["a.wav,one", "b.wav,two"]),
            "has 2 utterance(s), too few to split into train/dev/test",
        ),
        (
            lambda d: (d / "train").mkdir(parents=True),
            "has ['train'] but lacks ['dev', 'test']: add the missing split",
        ),
    ],
    ids=["layout", "csv-header", "letter", "empty-text", "too-few", "lacking-split"],
)
def test_bad_recordings_get_one_line_with_the_fix(tmp_path, make, message):
    d = tmp_path / "rec"
    made = make(d)
    source = made if isinstance(made, Path) and made.suffix == ".csv" else d
    with pytest.raises(PrunekitError) as err:
        read_recordings(source)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_kaldi_problems(tmp_path):
    root = _kaldi(tmp_path / "k")
    (root / "audio" / "spk0-utt0.wav").unlink()
    with pytest.raises(
        PrunekitError, match=r"1 audio file\(s\) listed in .* do not exist \(first: "
    ):
        read_recordings(root)
    (root / "wav.scp").write_text("spk0-utt0 sox a.flac -t wav - |\n")
    with pytest.raises(PrunekitError, match="wav.scp entry of spk0-utt0 is a command"):
        read_recordings(root)
    (root / "segments").write_text("seg1 spk0-utt0 0.0 1.0\n")
    with pytest.raises(
        PrunekitError, match="has a Kaldi `segments` file, which prunekit does not read"
    ):
        read_recordings(root)
    with pytest.raises(PrunekitError, match="speech source .* does not exist"):
        read_recordings(tmp_path / "nowhere")
