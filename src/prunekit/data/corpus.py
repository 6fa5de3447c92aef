"""A text corpus with train/valid/test splits, from the default corpus, a folder or one file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunekit.errors import PrunekitError

LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("train.txt", "valid.txt", "test.txt"),
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"),
    ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
)
"""Accepted folder layouts: (train, valid, test) file names, tried in this order."""

MIN_LINES = 20
"""A single file needs at least this many non-empty lines to be split."""

_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Corpus:
    """Raw text of each split of a corpus (lines separated by "\\n")."""

    name: str
    train: str
    valid: str
    test: str


def read_utf8(path: Path) -> str:
    """Read a text file as strict UTF-8, with "\\n" line ends and no byte-order mark.

    Raises:
        PrunekitError: if the file is not valid UTF-8 (names the offset of the first bad byte).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PrunekitError(
            f"{path} is not valid UTF-8 (first bad byte 0x{data[err.start]:02x} at byte offset "
            f"{err.start}): convert it with `iconv -f <enc> -t utf-8 {path} > {path}.utf8` "
            "(e.g. <enc>=latin1) and use the converted file"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _read_split(path: Path, split: str) -> str:
    text = read_utf8(path)
    if not text.strip():
        raise PrunekitError(f"{path} is empty: put the {split} text in it, one sentence per line")
    return text


def _load_folder(folder: Path) -> Corpus:
    for names in LAYOUTS:
        present = [(folder / name).is_file() for name in names]
        if all(present):
            texts = [_read_split(folder / n, s) for n, s in zip(names, _SPLITS, strict=True)]
            return Corpus(folder.name, *texts)
        if any(present):
            lacking = ", ".join(n for n, p in zip(names, present, strict=True) if not p)
            raise PrunekitError(f"corpus folder {folder} lacks {lacking}: add the missing split")
    accepted = "; ".join(" + ".join(names) for names in LAYOUTS)
    raise PrunekitError(
        f"corpus folder {folder} has no known layout: put in it {accepted} "
        "(or pass a single text file to split 90/5/5)"
    )


def split_lines(text: str, source: str = "text") -> tuple[str, str, str]:
    """Split text by lines into contiguous train/valid/test blocks (90 % / 5 % / 5 %).

    The shares count non-empty lines: with n of them, valid and test get `max(1, n // 20)` each
    and train the rest, in that order. Every block ends with a newline.

    Args:
        text: the whole text.
        source: what to call the text in error messages (e.g. its path).

    Returns:
        (train, valid, test) text.

    Raises:
        PrunekitError: if the text has fewer than `MIN_LINES` non-empty lines.
    """
    lines = text.splitlines()
    nonempty = [i for i, line in enumerate(lines) if line.strip()]
    n = len(nonempty)
    if n < MIN_LINES:
        raise PrunekitError(
            f"{source} has {n} non-empty lines, too few to split (needs {MIN_LINES}): "
            "use a bigger file or a folder with train.txt/valid.txt/test.txt"
        )
    held = max(1, n // 20)
    cut_valid, cut_test = nonempty[n - 2 * held], nonempty[n - held]
    blocks = (lines[:cut_valid], lines[cut_valid:cut_test], lines[cut_test:])
    return tuple("\n".join(block) + "\n" for block in blocks)  # type: ignore[return-value]


def _load_file(path: Path) -> Corpus:
    train, valid, test = split_lines(read_utf8(path), source=str(path))
    return Corpus(path.stem, train, valid, test)


def spoken_corpus(corpus: Corpus) -> Corpus:
    """The corpus in spoken form (`prunekit.data.spoken.spoken_lines`: what a recognizer emits)."""
    from prunekit.data.spoken import spoken_lines

    splits = (spoken_lines(t) + "\n" for t in (corpus.train, corpus.valid, corpus.test))
    return Corpus(corpus.name, *splits)


def load_corpus(source: str | Path | None = None, text: str = "raw") -> Corpus:
    """Load a corpus and its train/valid/test splits.

    Args:
        source: None or "shakespeare" for the default corpus; "web-bible" for the World English
            Bible (`prunekit.data.web_bible`); a folder holding one of `LAYOUTS`
            (plain, WikiText or PTB file names); or one text file, split by `split_lines`.
        text: "raw" (as written) or "spoken" (`spoken_corpus`: lower case, numbers spelled out,
            no punctuation), for LMs fused with a speech recognizer.

    Returns:
        The corpus, named "shakespeare", "web-bible", the folder's name or the file's stem.

    Raises:
        PrunekitError: if the path is missing, the folder has no known layout, a split is empty,
            a file is not UTF-8, or a single file is too small to split.
    """
    if text not in ("raw", "spoken"):
        raise PrunekitError(f"data.text={text!r} is not known: use 'raw' or 'spoken'")
    corpus = _load(source)
    return spoken_corpus(corpus) if text == "spoken" else corpus


def _load(source: str | Path | None) -> Corpus:
    if source is None or (isinstance(source, str) and source == "shakespeare"):
        from prunekit.data.shakespeare import load_shakespeare

        return load_shakespeare()
    if isinstance(source, str) and source == "web-bible":
        from prunekit.data.web_bible import load_web_bible

        return load_web_bible()
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_folder(path)
    if path.is_file():
        return _load_file(path)
    raise PrunekitError(
        f"corpus path {path} does not exist: pass an existing folder or text file, "
        "or 'shakespeare' (the default) or 'web-bible' for a built-in corpus"
    )
