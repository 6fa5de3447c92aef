import pytest

from prunekit.audio import synth
from prunekit.audio.synth import (
    ESPEAK_ACCENTS,
    Voice,
    check_voice,
    english_voices,
    installed_voices,
    synthesize,
)
from prunekit.errors import PrunekitError

TEXT = "the quality of mercy is not strained."  # 7 words


@pytest.mark.parametrize(
    "voice",
    [
        Voice("espeak-ng", "en-gb-scotland", "f3", rate=1.15, pitch=0.8),
        Voice("flite", "slt", rate=0.85, pitch=1.25),
        Voice("festival", "kal_diphone", pitch=1.25),
        Voice("festival", "us-slt-hts", rate=1.15),
    ],
    ids=lambda v: v.id,
)
def test_each_engine_speaks_16_khz_audio_of_plausible_length(voice):
    wave = synthesize(TEXT, voice)
    seconds = wave.shape[0] / 16000
    assert 7 / 5.0 < seconds < 7 / 1.2  # between 1.2 and 5 words per second
    assert wave.dim() == 1 and wave.abs().max() <= 1.0
    assert wave.pow(2).mean().sqrt() > 0.01  # not silence


def test_rate_changes_duration():
    slow = synthesize(TEXT, Voice("espeak-ng", "en-us", rate=0.85)).shape[0]
    fast = synthesize(TEXT, Voice("espeak-ng", "en-us", rate=1.15)).shape[0]
    assert fast < 0.85 * slow


def test_english_voices_cover_the_engines_and_round_trip():
    voices = english_voices()
    speakers = {v.speaker for v in voices}
    assert {v.name for v in voices if v.engine == "espeak-ng"} == set(ESPEAK_ACCENTS)
    assert len(ESPEAK_ACCENTS) == 8
    assert {"flite:kal16", "flite:awb", "flite:rms", "flite:slt"} <= speakers
    assert {"festival:kal_diphone", "festival:ked_diphone", "festival:us-slt-hts"} <= speakers
    assert len({v.id for v in voices}) == len(voices)
    assert all(Voice.from_id(v.id) == v for v in voices)
    for v in voices:  # every listed voice is installed here
        check_voice(v)


def test_bad_voices():
    with pytest.raises(PrunekitError, match="unknown speech engine 'say'"):
        Voice("say", "x")
    with pytest.raises(PrunekitError, match="voice flite:rms: its pitch is fixed, use pitch=1.0"):
        Voice("flite", "rms", pitch=1.2)
    with pytest.raises(PrunekitError, match="only espeak-ng voices take a variant"):
        Voice("flite", "slt", "m3")
    with pytest.raises(PrunekitError, match="voice id 'nonsense' is malformed"):
        Voice.from_id("nonsense")


def test_missing_synthesizer_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(PrunekitError) as err:
        synthesize(TEXT, Voice("flite", "kal16"))
    assert str(err.value) == (
        "flite is not installed (needed for voice flite:kal16): install it with "
        "`sudo apt-get install flite` (or run `make setup`)"
    )


def test_missing_voice_names_its_package(monkeypatch):
    monkeypatch.setattr(synth, "installed_voices", lambda engine: frozenset({"kal_diphone"}))
    with pytest.raises(PrunekitError) as err:
        check_voice(Voice("festival", "us-slt-hts"))
    assert str(err.value).startswith(
        "festival has no voice us-slt-hts: install it with `sudo apt-get install festvox-us-slt-hts`"
    )
    monkeypatch.setattr(synth, "installed_voices", lambda engine: frozenset({"en-us"}))
    with pytest.raises(
        PrunekitError,
        match=r"espeak-ng has no voice \+m3: install it with `sudo apt-get install espeak-ng-data`",
    ):
        check_voice(Voice("espeak-ng", "en-us", "m3"))


def test_installed_voices_lists_what_the_engines_report():
    assert {"en-us", "en-029", "+m3", "+klatt3"} <= installed_voices("espeak-ng")
    assert {"kal16", "slt"} <= installed_voices("flite")
    assert installed_voices("festival") == {"kal_diphone", "ked_diphone", "us-slt-hts"}
