"""The words and classes of Google Speech Commands' 12-class keyword task (v0.01, as seed 002 uses).

Classes, in TensorFlow's `input_data.py` order: silence, unknown, then the ten keywords. Unknown
clips are any other Speech Commands word (v0.01's twenty, and v0.02's five additions when a
v0.02 folder is given).
"""

from __future__ import annotations

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
LABELS = (SILENCE, UNKNOWN, *KEYWORDS)
"""Class index -> name: 0 silence, 1 unknown, 2..11 the keywords."""

V1_WORDS = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy",
    "house", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "wow", "yes", "zero",
)  # fmt: skip
"""Speech Commands v0.01's 30 words."""

V2_EXTRA = ("backward", "follow", "forward", "learn", "visual")
"""Words v0.02 adds (35 in all)."""

UNKNOWN_WORDS = tuple(w for w in V1_WORDS if w not in KEYWORDS)
"""The 20 v0.01 words that make up the synthetic unknown class."""

KNOWN_WORDS = frozenset(V1_WORDS + V2_EXTRA)
BACKGROUND = "_background_noise_"


def label_of(word: str) -> int:
    """Class index of a Speech Commands word (a keyword, or unknown)."""
    return LABELS.index(word) if word in KEYWORDS else LABELS.index(UNKNOWN)
