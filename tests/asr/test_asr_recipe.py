"""The speech recipe: corpus, acoustic model, fused LM, source LM and decoding sections."""

import pytest

from prunekit.audio.speech_config import SpeechConfig
from prunekit.config.asr import lm_recipe, load_asr_recipe, parse_asr_recipe, text_corpus
from prunekit.errors import PrunekitError
from prunekit.pipelines.asr_lms import comparable, fusion_lm_recipe, source_lm_recipe


def test_builtin_recipe_has_every_section():
    r = load_asr_recipe()  # asr_demo
    assert r.name == "asr_demo" and isinstance(r.speech, SpeechConfig)
    assert r.am.train.steps == 3000 and r.lm.recipe == "demo"
    assert r.source_lm is not None and r.source_lm.data == {"vocab_size": 500}
    assert r.decode.search == "coordinate" and r.decode.threads == 1
    assert r.decode.beam_width == 64 and r.decode.tune_utterances == 100  # fusion needs the beam
    assert load_asr_recipe("asr_demo") == r


def test_fused_lm_is_the_lm_recipe_on_the_spoken_text():
    r = load_asr_recipe(None, {"lm.train.steps": 7, "lm.model.n_layer": 1})
    cfg = fusion_lm_recipe(r)
    assert cfg.data.text == "spoken" and cfg.data.corpus == "shakespeare"
    assert cfg.train.steps == 7 and cfg.model["n_layer"] == 1
    assert cfg.model["d_model"] == 128  # the rest of the demo recipe's model stays
    assert cfg.prune == []  # the demo recipe's prune sections are not the LM's business


def test_a_trained_lm_is_compared_on_what_changes_it():
    now = fusion_lm_recipe(load_asr_recipe()).model_dump(mode="json")
    older = {k: v for k, v in now.items() if k != "speed"}  # written before `speed` existed
    older["data"] = {**now["data"], "vocab_size": 2000}  # the sentencepiece default, spelled out
    assert comparable(older) == comparable(now)
    other = {**now, "data": {**now["data"], "vocab_size": 1000}}
    assert comparable(other) != comparable(now)
    steps = {**now, "train": {**now["train"], "steps": now["train"]["steps"] + 1}}
    assert comparable(steps) != comparable(now)


def test_corpus_follows_the_speech_or_the_lm():
    assert text_corpus(parse_asr_recipe({"speech": {"corpus": "web-bible"}})) == "web-bible"
    assert text_corpus(parse_asr_recipe({"lm": {"data": {"corpus": "web-bible"}}})) == "web-bible"
    r = parse_asr_recipe({"speech": {"corpus": "web-bible"}})
    assert fusion_lm_recipe(r).data.corpus == "web-bible"


def test_source_lm_reads_the_transcripts(tmp_path):
    r = load_asr_recipe()
    cfg = source_lm_recipe(r.source_lm, tmp_path, r.name)
    assert cfg.data.corpus == str(tmp_path) and cfg.data.text == "raw"
    assert cfg.data.vocab_size == 500 and cfg.train.steps == 400
    assert parse_asr_recipe({"source_lm": None}).source_lm is None


def test_errors_name_the_key():
    with pytest.raises(PrunekitError) as err:
        parse_asr_recipe({"decode": {"beam": 4}})
    assert str(err.value) == (
        "recipe key 'decode.beam' is not known: remove it or fix its spelling"
    )
    with pytest.raises(PrunekitError) as err:
        parse_asr_recipe({"speech": {"train_utterances": 0}})
    assert str(err.value).startswith("recipe key 'speech.train_utterances': Input should be")
    r = parse_asr_recipe({"lm": {"train": {"stepz": 3}}})
    with pytest.raises(PrunekitError) as err:
        lm_recipe(r.lm, "x")
    assert str(err.value) == (
        "lm (demo): recipe key 'train.stepz' is not known: remove it or fix its spelling"
    )
    with pytest.raises(PrunekitError) as err:
        load_asr_recipe("no_such_recipe")
    assert str(err.value) == (
        "recipe no_such_recipe does not exist: pass a YAML file or a built-in name (e.g. asr_demo)"
    )
    with pytest.raises(PrunekitError) as err:
        lm_recipe(parse_asr_recipe({"lm": {"recipe": "nope"}}).lm, "x")
    assert str(err.value) == (
        "recipe nope does not exist: pass a YAML file or a built-in name (e.g. demo)"
    )
