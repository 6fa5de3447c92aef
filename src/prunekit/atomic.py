"""Write files so that a crash never leaves a half-written one: temp file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, on error delete it.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_path(d / "x.txt") as tmp:
        ...     _ = tmp.write_text("hi")
        >>> (d / "x.txt").read_text()
        'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON to `path`."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically create `path` by calling `writer(tmp_path)` (e.g. a safetensors or savefig call)."""
    with atomic_path(path) as tmp:
        writer(tmp)
