import pytest

from prunekit.audio.plan import SPLITS, plan_synthetic, split_speakers
from prunekit.audio.speech_config import DEFAULT_UNSEEN, SpeechConfig
from prunekit.audio.synth import Voice, english_voices
from prunekit.audio.transcripts import utterance_texts
from prunekit.data import load_corpus
from prunekit.data.spoken import spoken_form
from prunekit.errors import PrunekitError


@pytest.fixture(scope="module")
def texts(tiny_corpus):
    c = load_corpus(str(tiny_corpus))
    return {"train": c.train, "valid": c.valid, "test": c.test}


def _speaker(voice_id: str) -> str:
    return Voice.from_id(voice_id).speaker


def test_default_split_holds_out_whole_speakers():
    speakers = sorted({v.speaker for v in english_voices()})
    seen, unseen = split_speakers(speakers, DEFAULT_UNSEEN)
    assert not set(seen) & set(unseen) and len(seen) + len(unseen) == len(speakers) == 135
    assert len(unseen) == 32  # 30 espeak-ng, flite:rms, festival:ked_diphone
    assert {"flite:rms", "festival:ked_diphone", "espeak-ng:en-029", "espeak-ng:en-us+m3"} <= set(
        unseen
    )
    assert {s.split(":")[0] for s in seen} == {"espeak-ng", "flite", "festival"}


def test_plan_splits_texts_and_voices(texts):
    cfg = SpeechConfig(train_utterances=40, dev_utterances=10, test_utterances=20, max_words=12)
    plan = plan_synthetic(texts, cfg)
    by = {s: [u for u in plan if u.split == s] for s in ("train", "dev", "test", "babble")}
    assert [len(by[s]) for s in ("train", "dev", "test", "babble")] == [40, 10, 20, 2]
    # texts: each split's transcripts come from its own split of the LM corpus
    for split, source in SPLITS.items():
        allowed = {spoken_form(t) for t in utterance_texts(texts[source], 8, 12)}
        assert {u.text for u in by[split]} <= allowed
    # voices: no held-out speaker in train or dev; test is half unseen, and unseen means unheard
    train_speakers = {_speaker(u.voice) for u in by["train"]}
    _, held_out = split_speakers(sorted({v.speaker for v in english_voices()}), DEFAULT_UNSEEN)
    assert not train_speakers & set(held_out)
    assert not {_speaker(u.voice) for u in by["dev"] + by["babble"]} & set(held_out)
    assert sum(u.unseen for u in by["test"]) >= 10
    for u in by["test"]:
        assert u.unseen == (_speaker(u.voice) not in train_speakers)
    assert not any(u.unseen for u in by["train"] + by["dev"])
    # augmentation: training only
    assert all(u.augment.seed == 0 and u.augment.speed == 1.0 for u in by["dev"] + by["test"])
    assert len({u.augment.seed for u in by["train"]}) == 40
    assert plan == plan_synthetic(texts, cfg)  # deterministic
    assert plan != plan_synthetic(texts, cfg.model_copy(update={"seed": 1}))


def test_engine_shares_and_bad_voice_splits(texts):
    cfg = SpeechConfig(
        train_utterances=30, dev_utterances=2, test_utterances=4, engines={"flite": 1.0}
    )
    plan = plan_synthetic(texts, cfg)
    assert {Voice.from_id(u.voice).engine for u in plan} == {"flite"}
    assert {_speaker(u.voice) for u in plan if u.unseen} == {"flite:rms"}
    with pytest.raises(
        PrunekitError, match=r"speech.unseen_voices \['nobody'\] matches no speaker"
    ):
        plan_synthetic(texts, cfg.model_copy(update={"unseen_voices": ["nobody"]}))
    with pytest.raises(PrunekitError, match="holds out every speaker: leave some for training"):
        plan_synthetic(texts, cfg.model_copy(update={"unseen_voices": ["flite:*"]}))


def test_too_many_utterances_for_the_corpus(texts):
    cfg = SpeechConfig(train_utterances=4, dev_utterances=5000, test_utterances=4)
    with pytest.raises(PrunekitError) as err:
        plan_synthetic(texts, cfg)
    assert "the valid split has" in str(err.value)
    assert str(err.value).endswith(
        "fewer than the 5000 asked for: lower the speech utterance count or use a bigger corpus"
    )
