"""Progress on stderr for long work outside the Trainer (data preparation, tokenizer training).

Shown only when stderr is a terminal, as tqdm does with `disable=None`, so logs, pipes and
tests see nothing but results and one-line errors. The Trainer's own bars carry a label too
(`Trainer(label=...)`: "train demo", "prune unstructured-taylor", a paper cell's id).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def shown() -> bool:
    """Whether progress goes to stderr (it is a terminal)."""
    return sys.stderr.isatty()


def note(message: str) -> None:
    """One progress line, e.g. "data: training a sentencepiece tokenizer (2000 units)"."""
    if shown():
        print(f"prunekit: {message}", file=sys.stderr, flush=True)


def progress_bar(items: Iterable[T], label: str, total: int | None = None) -> Iterable[T]:
    """`items`, with a labelled bar while they are consumed (terminal only)."""
    return tqdm(items, desc=label, total=total, disable=not shown(), leave=False)
