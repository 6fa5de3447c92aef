"""Google-12 keyword data: the synthetic Speech Commands folder, the folder reader, the features."""

import logging
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from prunekit.audio import build as build_module
from prunekit.audio import kws_synth
from prunekit.audio.features import LogMel
from prunekit.audio.kws_features import augment, kws_features
from prunekit.audio.kws_synth import KWSSynthConfig, plan_kws, render_clip
from prunekit.audio.kws_words import KEYWORDS, LABELS, UNKNOWN_WORDS, V1_WORDS
from prunekit.audio.plan import split_speakers
from prunekit.audio.speech_commands import hash_split, read_speech_commands
from prunekit.audio.speech_config import DEFAULT_UNSEEN
from prunekit.audio.wav import read_wav, write_wav
from prunekit.bench.kws_data import load_data
from prunekit.cli.main import main
from prunekit.errors import PrunekitError

SMALL = KWSSynthConfig(train_per_class=2, dev_per_class=1, test_per_class=1, workers=1)


def _tone(word: str, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A stand-in clip: a word-specific tone burst in faint noise."""
    g = torch.Generator().manual_seed(seed)
    n = round(16000 * seconds)
    t = torch.arange(n) / 16000
    f = 200 + 60 * (sorted(V1_WORDS).index(word) if word in V1_WORDS else 0)
    burst = ((t > 0.2) & (t < 0.6)).float()
    return 0.3 * burst * torch.sin(2 * math.pi * f * t) + 0.005 * torch.randn(n, generator=g)


def make_folder(
    root: Path, words=("yes", "no", *KEYWORDS[2:], "cat", "bed"), speakers=6, lists=True
):
    """A Speech Commands folder of tone clips: `speakers` speakers per word, noise, split lists."""
    for word in words:
        for s in range(speakers):
            write_wav(root / word / f"spk{s:02d}_nohash_0.wav", _tone(word, seed=s))
    write_wav(root / "_background_noise_" / "white_noise.wav", 0.1 * torch.randn(40000))
    if lists:
        (root / "validation_list.txt").write_text(
            "".join(f"{w}/spk04_nohash_0.wav\n" for w in words)
        )
        (root / "testing_list.txt").write_text("".join(f"{w}/spk05_nohash_0.wav\n" for w in words))
    return root


def test_plan_splits_speakers_three_ways_and_balances_the_classes():
    plan = plan_kws(SMALL)
    clips = [u for u in plan if u.split != "babble"]
    speakers = {
        s: {u.voice.split("@")[0] for u in clips if u.split == s} for s in ("train", "dev", "test")
    }
    assert not (speakers["train"] & speakers["dev"]) and not (speakers["train"] & speakers["test"])
    assert not (speakers["dev"] & speakers["test"])
    _, held = split_speakers(sorted(speakers["test"]), DEFAULT_UNSEEN)
    assert sorted(held) == sorted(speakers["test"])
    for split, n in (("train", 2), ("dev", 1), ("test", 1)):
        words = Counter(u.text for u in clips if u.split == split)
        assert all(words[k] == n for k in KEYWORDS)
        assert sum(words[w] for w in UNKNOWN_WORDS) == n and sum(words.values()) == 11 * n
    assert len({u.id for u in plan}) == len(plan)
    assert all(re.fullmatch(r"[a-z]+/[0-9a-f]{8}_nohash_\d+", u.id) for u in clips)
    assert all(u.unseen == (u.split == "test") for u in clips)


def test_render_clip_is_one_second_with_the_whole_word_inside():
    utt = next(u for u in plan_kws(SMALL) if u.voice.startswith("espeak-ng") and u.split == "dev")
    wave = render_clip(utt, [])
    assert wave.shape == (16000,) and wave.abs().max() <= 1.0
    loud = (wave.abs() > 0.05).nonzero()
    assert 0.1 < (int(loud[-1]) - int(loud[0])) / 16000 < 1.0  # a word, not noise or nothing


@pytest.fixture()
def fake_synth(monkeypatch):
    """Synthesis replaced by tones (the layout, caching and resume do not depend on the voices)."""
    calls = []

    def tone(text, voice, **kw):
        calls.append(text)
        return _tone(text.split()[0].strip("."), seconds=0.5)

    monkeypatch.setattr(kws_synth, "synthesize", tone)
    monkeypatch.setattr(build_module, "synthesize", tone)
    return calls


def test_synthetic_folder_has_the_speech_commands_layout_is_cached_and_resumes(fake_synth):
    folder = kws_synth.synthetic_speech_commands(SMALL, progress=False)
    assert len(fake_synth) == 11 * 4 + 8  # clips + babble sentences
    splits = read_speech_commands(folder)
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [22, 11, 11]
    assert sorted(p.name for p in (folder / "_background_noise_").iterdir()) == [
        "babble.wav", "brown_noise.wav", "pink_noise.wav", "white_noise.wav"]  # fmt: skip
    train = {c.speaker for c in splits["train"]}
    assert not train & {c.speaker for c in splits["test"] + splits["dev"]}
    fake_synth.clear()
    assert kws_synth.synthetic_speech_commands(SMALL, progress=False) == folder
    assert fake_synth == []  # cached
    (folder.parent / "corpus.json").unlink()  # what a kill leaves: some clips, no marker
    lost = sorted(folder.glob("yes/*.wav"))[:2]
    for p in lost:
        p.unlink()
    kws_synth.synthetic_speech_commands(SMALL, progress=False)
    assert fake_synth == ["yes", "yes"] and all(p.is_file() for p in lost)


def test_reader_uses_the_lists_and_otherwise_splits_by_speaker_hash(tmp_path):
    splits = read_speech_commands(make_folder(tmp_path / "sc"))
    assert {c.speaker for c in splits["dev"]} == {"spk04"} and {
        c.speaker for c in splits["test"]
    } == {"spk05"}
    assert len(splits["train"]) == 12 * 4
    assert {c.label for c in splits["train"]} == set(range(1, 12))
    assert hash_split("yes/abc_nohash_0.wav") == hash_split("no/abc_nohash_3.wav")  # by speaker
    drawn = Counter(hash_split(f"w/{i:08x}_nohash_0.wav") for i in range(2000))
    assert 150 < drawn["dev"] < 250 and 150 < drawn["test"] < 250


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda r: (r / "yess").mkdir(), "folder .*yess is not a Speech Commands word: keep one folder per word"),
        (lambda r: [p.unlink() for p in (r / "yes").iterdir()], "class yes is empty: .* has no training clip of 'yes'; add a folder"),
        (lambda r: [p.unlink() for w in ("cat", "bed") for p in (r / w).iterdir()], "class _unknown_ is empty"),
        (lambda r: (r / "_background_noise_" / "white_noise.wav").unlink(), "the silence class is empty: .* holds no wav files"),
    ],
)  # fmt: skip
def test_bad_folders_are_one_line_errors_and_exit_2(tmp_path, capsys, spoil, message):
    root = make_folder(tmp_path / "sc")
    spoil(root)
    with pytest.raises(PrunekitError, match=message):
        read_speech_commands(root)
    code = main(
        [
            "bench",
            "kws",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--work",
            str(tmp_path / "w"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(message, err[0])


def test_features_are_99_by_32_log_mels_balanced_augmented_and_cached(
    tmp_path, caplog, monkeypatch
):
    root = make_folder(tmp_path / "sc", speakers=10)
    write_wav(root / "yes" / "short_nohash_0.wav", _tone("yes", seconds=0.7))
    write_wav(root / "no" / "long_nohash_0.wav", _tone("no", seconds=1.3))
    with caplog.at_level(logging.WARNING):
        feats = kws_features(root, progress=False)
    lines = [r.getMessage() for r in caplog.records]
    assert (
        len(lines) == 1
        and lines[0].startswith("2 of ")
        and "1 shorter ones padded with silence, 1 longer ones cut" in lines[0]
    )
    for split in ("train", "dev", "test"):
        x, y = feats.x[split], feats.y[split]
        counts = Counter(y.tolist())
        keywords = sum(counts[k] for k in range(2, 12))
        assert x.shape[1:] == (99, 32) and x.shape[0] == len(y)
        assert counts[0] == counts[1] == math.ceil(keywords / 10)  # silence, unknown: 10 % each
    # dev is left as recorded: its features are the log-mels of the clip itself
    dev_clip = next(c for c in read_speech_commands(root)["dev"] if c.word in KEYWORDS)
    fe = LogMel(n_mels=32)
    wave = torch.nn.functional.pad(read_wav(dev_clip.path)[0], (0, 80))
    assert torch.allclose(feats.x["dev"][0], fe(wave), atol=1e-5)
    assert (
        feats.meta["padded"] == 1
        and feats.meta["cut"] == 1
        and feats.meta["labels"] == list(LABELS)
    )
    norm = feats.normalized()["train"].reshape(-1, 32)
    assert norm.mean(0).abs().max() < 1e-3 and (norm.std(0) - 1).abs().max() < 1e-2
    import prunekit.audio.kws_features as kf

    monkeypatch.setattr(kf, "_compute", lambda *a, **k: pytest.fail("computed again"))
    again = kws_features(root, progress=False)
    assert torch.equal(again.x["train"], feats.x["train"])


def test_training_augmentation_shifts_and_adds_noise():
    import random

    wave = torch.zeros(16000)
    wave[8000:8100] = 1.0
    noise = [torch.randn(30000)]
    outs = [augment(wave, noise, random.Random(i)) for i in range(20)]
    peaks = {int(o.abs().argmax()) for o in outs}
    assert len(peaks) > 10 and all(6400 <= p <= 9700 for p in peaks)  # shifted by up to 100 ms
    noisy = sum(float(o[:4000].abs().max()) > 0 for o in outs)
    assert 10 <= noisy < 20  # background noise on about 80 % of the clips


def test_a_folder_is_a_bench_data_provider(tmp_path):
    data = load_data(str(make_folder(tmp_path / "sc")))
    assert data.labels == list(LABELS) and data.frames == 99 and data.n_in == 32
    assert data.meta["provider"] == "speech-commands" and data.train_x.shape[0] == 40 + 4 + 4


def test_speech_provider_reads_the_synthetic_folder(tmp_path, monkeypatch):
    from prunekit.audio import kws_synth as synth_module

    folder = make_folder(tmp_path / "sc")
    monkeypatch.setattr(synth_module, "synthetic_speech_commands", lambda: folder)
    data = load_data("speech", seed=3)
    assert data.meta["provider"] == "speech" and data.meta["seed"] == 3
    assert data.meta["source"] == str(folder.resolve()) and data.labels[0] == "_silence_"
