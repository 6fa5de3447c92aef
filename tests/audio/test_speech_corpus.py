import json
import wave

import pytest
import torch

from prunekit.audio import build as build_module
from prunekit.audio import synth
from prunekit.audio.corpus import speech_corpus
from prunekit.audio.corpus_features import corpus_features, speech_features
from prunekit.audio.features import LogMel
from prunekit.data.spoken import spoken_form
from prunekit.errors import PrunekitError


def test_tiny_corpus_is_16_khz_16_bit_mono_with_a_manifest(tiny_speech):
    c = tiny_speech
    assert [len(c.splits[s]) for s in ("train", "dev", "test")] == [4, 2, 4]
    for utts in c.splits.values():
        for u in utts:
            with wave.open(str(u.path)) as f:
                assert (f.getframerate(), f.getsampwidth(), f.getnchannels()) == (16000, 2, 1)
                assert f.getnframes() / 16000 == pytest.approx(u.seconds)
            assert 1.0 < u.seconds < 15.0
            assert u.text == spoken_form(u.text) and spoken_form(u.extra["synth_text"]) == u.text
    rows = [json.loads(line) for line in (c.root / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and rows[0]["path"].startswith("wav/train/")
    assert c.unseen_voices and set(c.unseen_voices) <= {u.voice for u in c.splits["test"]}
    train_speakers = {u.speaker for u in c.splits["train"]}
    assert all(u.speaker not in train_speakers for u in c.splits["test"] if u.unseen)
    assert c.meta["build_sessions"] == 1 and c.meta["build_seconds"] > 0
    assert c.hours() == pytest.approx(sum(u.seconds for s in c.splits.values() for u in s) / 3600)


def test_second_call_is_a_cache_hit(tiny_speech, tiny_speech_cfg, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(build_module, "synthesize", refuse)
    again = speech_corpus(tiny_speech_cfg, progress=False)
    assert again.root == tiny_speech.root and again.splits == tiny_speech.splits


def test_killed_build_resumes_where_it_stopped(tiny_speech_cfg, monkeypatch):
    cfg = tiny_speech_cfg.model_copy(
        update={"seed": 5, "train_utterances": 2, "dev_utterances": 1, "test_utterances": 2}
    )
    first = speech_corpus(cfg, progress=False)
    wavs = sorted((first.root / "wav").rglob("*.wav"))
    assert len(wavs) == 7  # 2 + 1 + 2 utterances + 2 babble clips
    before = {p: p.read_bytes() for p in wavs}
    # what a kill leaves: some wavs (never half-written ones), no manifest
    for name in ("manifest.jsonl", "corpus.json"):
        (first.root / name).unlink()
    lost = [wavs[0], wavs[-1]]
    for p in lost:
        p.unlink()
    calls = []
    real = build_module.synthesize
    monkeypatch.setattr(
        build_module, "synthesize", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    second = speech_corpus(cfg, progress=False)
    assert len(calls) == 2  # only the missing ones
    assert {p: p.read_bytes() for p in wavs} == before  # and rendered identically
    assert second.meta["build_sessions"] == 2 and second.splits == first.splits


def test_features_are_cached_log_mels_with_unseen_voices(tiny_speech, tiny_speech_cfg, monkeypatch):
    feats = speech_features(tiny_speech_cfg, progress=False)
    assert set(feats) == {"train", "dev", "test"}
    fe = LogMel(n_mels=40)
    for split, fs in feats.items():
        utts = tiny_speech.splits[split]
        assert fs.ids == [u.id for u in utts] and fs.texts == [u.text for u in utts]
        assert fs.voices == [u.voice for u in utts] and fs.feats.shape[1] == 40
        frames = [fe.num_frames(round(u.seconds * 16000)) for u in utts]
        assert fs.lengths.tolist() == frames
        assert len(fs.meta["train_mean"]) == 40 and fs.meta["n_mels"] == 40
    test = feats["test"]
    assert test.meta["unseen_voices"] == tiny_speech.unseen_voices
    assert torch.isfinite(test.feats).all()

    def refuse(self, wave):
        raise AssertionError("features computed again")

    monkeypatch.setattr(LogMel, "forward", refuse)
    again = corpus_features(tiny_speech, n_mels=40, progress=False)
    assert torch.equal(again["train"].feats, feats["train"].feats)


def test_missing_synthesizer_fails_before_rendering(tiny_speech_cfg, monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    monkeypatch.setattr(synth, "installed_voices", lambda engine: frozenset())
    cfg = tiny_speech_cfg.model_copy(update={"seed": 11})
    with pytest.raises(PrunekitError) as err:
        speech_corpus(cfg, progress=False)
    msg = str(err.value)
    assert "is not installed (needed for voice" in msg and "`sudo apt-get install " in msg
    assert "\n" not in msg
