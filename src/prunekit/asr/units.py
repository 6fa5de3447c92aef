"""The acoustic model's output units: the characters of `prunekit.data.spoken.spoken_form` text.

Id 0 is the CTC blank; then space, apostrophe and a-z. Characters, not the LM's subwords: a few
hours of speech cannot train 2,000 subword outputs, while every word the LM knows is spelled with
these 28 symbols (the LM scores each word as the decoder completes it).
"""

from __future__ import annotations

from collections.abc import Sequence

from prunekit.errors import PrunekitError

BLANK = 0
ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz"


class CharUnits:
    """Map spoken-form text to unit ids and back (`size` ids, blank included)."""

    def __init__(self, alphabet: str = ALPHABET) -> None:
        self.alphabet = alphabet
        self._ids = {c: i + 1 for i, c in enumerate(alphabet)}

    @property
    def size(self) -> int:
        """Number of output units, blank included."""
        return len(self.alphabet) + 1

    @property
    def space_id(self) -> int:
        return self._ids[" "]

    def encode(self, text: str) -> list[int]:
        """Unit ids of spoken-form `text` (no blanks).

        Raises:
            PrunekitError: a character the model cannot emit (normalize with `spoken_form`).
        """
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise PrunekitError(
                f"transcript {text[:60]!r} has the character {exc.args[0]!r}, which the acoustic "
                "model cannot emit: normalize transcripts with prunekit.data.spoken.spoken_form"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Text of unit ids (blanks skipped; no CTC collapsing)."""
        return "".join(self.alphabet[i - 1] for i in ids if i != BLANK)

    def collapse(self, ids: Sequence[int]) -> str:
        """Greedy CTC read-out: merge repeats, drop blanks, squeeze spaces.

        Example:
            >>> u = CharUnits()
            >>> u.collapse([0, 3, 3, 0, 3, 1, 1, 4])
            'aa b'
        """
        out, prev = [], None
        for i in ids:
            if i != prev and i != BLANK:
                out.append(i)
            prev = i
        return " ".join(self.decode(out).split())
