"""Utterance texts cut from a text corpus, and the text a synthesizer is given to speak.

Corpus lines are short (Shakespeare's verse: 7.5 words on average) or long (a Bible verse: up to
100). `utterance_texts` joins consecutive lines until an utterance has at least `min_words`
spoken words and ends a sentence or clause, and splits lines longer than `max_words` at
punctuation: with the defaults 8 and 30, about 3 to 15 seconds of speech at 2 to 3.4 words per
second.

The label is `spoken_form(text)`. The synthesizer reads `synth_text(text)`: the same words (numbers
spelled out as the label spells them, so "1603" is said "one thousand six hundred three"),
lower case (so no engine spells a capitalized word letter by letter), with the punctuation that
shapes prosody kept.
"""

from __future__ import annotations

import re

from prunekit.data.spoken import number_words, spoken_form

_DASHES = re.compile(r"[-\u2010-\u2015_/]+")
_NOT_SPOKEN = re.compile(r"[^a-z0-9' .,;:!?]+")
_INNER_PUNCTUATION = re.compile(r"[.,;:!?]+(?=[a-z0-9'])")
_NUMBER = re.compile(r"\d+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" ([.,;:!?])")
_CLAUSE_END = re.compile(r"(?<=[.,;:!?])\s+")
_ENDS_CLAUSE = re.compile(r"[.;:!?]['\"\u2019)\]]*$")


def synth_text(text: str) -> str:
    """What a synthesizer reads for `text`: the words of `spoken_form(text)` plus punctuation.

    Example:
        >>> synth_text("O Romeo, Romeo! 'Tis act 2-3.")
        "o romeo, romeo! 'tis act two three."
    """
    text = _DASHES.sub(" ", text.lower().replace("\u2019", "'"))
    text = _NOT_SPOKEN.sub("", text)
    text = _INNER_PUNCTUATION.sub("", text)  # "1,000" or "14:24": one number, as in spoken_form
    text = _NUMBER.sub(lambda m: f" {number_words(int(m.group()))} ", text)
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(text.split()))


def _n_words(text: str) -> int:
    return len(spoken_form(text).split())


def _split_long(line: str, max_words: int) -> list[str]:
    """Cut a line of more than `max_words` words at clause ends (else every `max_words` words)."""
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(line):
        if pieces and _n_words(pieces[-1]) + _n_words(clause) <= max_words:
            pieces[-1] += " " + clause
        else:
            pieces.append(clause)
    out: list[str] = []
    for piece in pieces:
        words = piece.split()
        while _n_words(" ".join(words)) > max_words:  # no punctuation to cut at
            out.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if words:
            out.append(" ".join(words))
    return out


def utterance_texts(text: str, min_words: int = 8, max_words: int = 30) -> list[str]:
    """Cut corpus text into utterances of about `min_words` to `max_words` spoken words, in order.

    Consecutive lines are joined until the utterance has at least `min_words` words and ends a
    sentence or clause (. ! ? ; :); a line that would push it past `max_words` starts the next
    utterance instead (so an utterance can end mid-sentence, or hold fewer than `min_words` words
    when the next line is long). A line longer than `max_words` is split at punctuation.

    Returns:
        The utterances in the corpus's own spelling (labels: `spoken_form`, speech: `synth_text`).
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    out: list[str] = []
    current: list[str] = []
    count = 0
    for line in text.splitlines():
        n = _n_words(line)
        if n == 0:
            continue
        pieces = _split_long(line.strip(), max_words) if n > max_words else [line.strip()]
        for piece in pieces:
            k = _n_words(piece)
            if current and count + k > max_words:
                out.append(" ".join(current))
                current, count = [], 0
            current.append(piece)
            count += k
            if count >= min_words and _ENDS_CLAUSE.search(piece):
                out.append(" ".join(current))
                current, count = [], 0
    if current:
        out.append(" ".join(current))
    return out
