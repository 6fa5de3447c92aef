"""Write files so that a crash never leaves a half-written one: temp file in the same folder, then rename.

Temp files carry the writer's pid; the next write of the same file removes those of writers
that died (e.g. killed mid-write). Files and folders made here get the permissions a plain `open()` / `mkdir()` would give under the
process umask (tempfile's own 0600 / 0700 would hide results from the rest of a team). A write
that fails (a full disk, a read-only folder) is a one-line `PrunekitError` naming the file; the
file it would have replaced is left as it was. JSON is written strictly: NaN and infinity, which
JSON does not have, become null.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from prunekit.errors import PrunekitError


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (e.g. 0o022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(*, folder: bool) -> int:
    """What open() (0o666) or mkdir() (0o777) would create under the current umask."""
    return (0o777 if folder else 0o666) & ~current_umask()


def write_failed(path: str | Path, exc: Exception) -> PrunekitError:
    """The one-line error for a write that failed (full disk, read-only or missing folder).

    `exc` is an OSError, or a library's wrapper of one (safetensors: "... I/O error: <reason>").
    """
    text = (str(exc).splitlines() or [""])[0]
    reason = getattr(exc, "strerror", None) or text.rpartition("I/O error: ")[2]
    reason = re.sub(r" \(os error \d+\)$", "", reason) or type(exc).__name__
    return PrunekitError(
        f"could not write {path} ({reason}): free some disk space or choose a writable --out; "
        "files written before are unchanged"
    )


def make_temp_dir(beside: str | Path) -> Path:
    """Create a new empty hidden folder next to `beside` (same filesystem, so a rename is atomic).

    Its permissions follow the umask, like the folder it will be renamed to.
    """
    beside = Path(beside)
    tmp = Path(tempfile.mkdtemp(prefix=f".{beside.name}.", dir=beside.parent))
    os.chmod(tmp, default_mode(folder=True))
    return tmp


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (True when it exists but is not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_temps(path: Path) -> None:
    """Delete temp files for `path` left by killed writers (their pid is in the name)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, on error delete it.

    Raises:
        PrunekitError: the folder cannot be created or written (disk full, read-only, ...).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_path(d / "x.txt") as tmp:
        ...     _ = tmp.write_text("hi")
        >>> (d / "x.txt").read_text()
        'hi'
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_temps(path)
        prefix = f".{path.name}.{os.getpid()}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, default_mode(folder=False))  # writers may have re-created it 0600
        os.replace(tmp_path, path)
    except (OSError, SafetensorError) as exc:
        raise write_failed(path, exc) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN / infinite float replaced by None (JSON has no such numbers).

    Example:
        >>> finite_json({"a": [1.0, float("nan")], "b": float("inf")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def json_text(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` that never writes NaN or Infinity (they become null; see `finite_json`)."""
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write `obj` as indented, strictly valid JSON to `path` (NaN / inf -> null)."""
    write_text(path, json_text(obj, indent=2, sort_keys=True) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically create `path` by calling `writer(tmp_path)` (e.g. a safetensors or savefig call)."""
    with atomic_path(path) as tmp:
        writer(tmp)
