"""`data.text: spoken`: an LM trained on the text a recognizer emits."""

import pytest

from prunekit.config import RunConfig, parse_recipe
from prunekit.data import load_corpus
from prunekit.data.corpus import spoken_corpus
from prunekit.data.spoken import spoken_form
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import prepare_data


def test_spoken_corpus_is_the_spoken_form_of_each_line(tiny_corpus):
    raw = load_corpus(str(tiny_corpus))
    spoken = load_corpus(str(tiny_corpus), text="spoken")
    assert spoken == spoken_corpus(raw)
    lines = [spoken_form(line) for line in raw.valid.splitlines()]
    assert spoken.valid.splitlines() == [line for line in lines if line]
    assert spoken.train != raw.train and spoken.train == spoken.train.lower()
    with pytest.raises(PrunekitError, match="data.text='loud' is not known: use 'raw' or 'spoken'"):
        load_corpus(str(tiny_corpus), text="loud")


def test_recipe_option_reaches_the_tokenizer(tiny_corpus):
    base = {"data": {"corpus": str(tiny_corpus), "tokenizer": "sentencepiece", "vocab_size": 300}}
    raw = prepare_data(parse_recipe(base))
    spoken = prepare_data(parse_recipe({"data": {**base["data"], "text": "spoken"}}))
    pieces = {spoken.tokenizer.decode([i]) for i in range(spoken.tokenizer.vocab_size)}
    assert not any(c.isupper() or c in ",.;:!?" for p in pieces for c in p)
    assert any(
        c.isupper() for i in range(raw.tokenizer.vocab_size) for c in raw.tokenizer.decode([i])
    )


def test_raw_text_is_left_out_of_recipe_dumps():
    """Recipes dumped before data.text existed (e.g. a bench paper grid.json) still compare equal."""
    assert "text" not in RunConfig().model_dump(mode="json")["data"]
    spoken = parse_recipe({"data": {"text": "spoken"}})
    assert spoken.model_dump(mode="json")["data"]["text"] == "spoken"
    assert parse_recipe(spoken.model_dump(mode="json")) == spoken
