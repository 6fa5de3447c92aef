"""The spoken form of written text: what a recognizer hears and emits.

Lower case, numbers spelled out, punctuation dropped (hyphens and dashes become spaces), apostrophes
kept inside words. Speech transcripts and the language models fused with a recognizer both use
this form, so a word the acoustic model spells is a word the LM has seen.
"""

from __future__ import annotations

import re

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

_DASHES = re.compile(r"[-\u2010-\u2015_/]+")
_NOT_SPOKEN = re.compile(r"[^a-z0-9' ]+")
_NUMBER = re.compile(r"\d+")
_EDGE_APOSTROPHES = re.compile(r"(?<![a-z])'+|'+(?![a-z])")


def number_words(n: int) -> str:
    """Spell a non-negative integer in English words (digit by digit above 999,999).

    Example:
        >>> number_words(1603)
        'one thousand six hundred three'
    """
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        head = number_words(thousands) + " thousand"
        return head + ("" if rest == 0 else " " + number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def spoken_form(text: str) -> str:
    """Return `text` as a recognizer would transcribe it: words of [a-z'] separated by one space.

    Example:
        >>> spoken_form("O Romeo, Romeo! wherefore art thou Romeo? 'Tis act 2-3.")
        'o romeo romeo wherefore art thou romeo tis act two three'
    """
    text = _DASHES.sub(" ", text.lower().replace("\u2019", "'"))
    text = _NOT_SPOKEN.sub("", text)
    text = _NUMBER.sub(lambda m: f" {number_words(int(m.group()))} ", text)
    text = _EDGE_APOSTROPHES.sub("", text)
    return " ".join(text.split())


def spoken_lines(text: str) -> str:
    """Apply `spoken_form` to every line, dropping lines left empty."""
    lines = (spoken_form(line) for line in text.splitlines())
    return "\n".join(line for line in lines if line)
