"""Run `prunekit ARGS...` and SIGKILL it the N-th time it passes POINT in a checkpoint or JSON write.

    python tests/reliability/killer.py POINT N ARGS...
    KILLER_COUNTS=counts.json python tests/reliability/killer.py count 0 ARGS...

POINT is one of:
    model-written     model.safetensors is in the temp folder, extra.safetensors is not yet
    files-written     the temp folder is complete, no rename has happened
    between-renames   the old checkpoint is moved aside, the new one is not yet in place
    renamed           the new checkpoint is in place, the old copy not yet removed
    json-rename       a JSON result is written to its temp file, not yet renamed

If the point is passed fewer than N times, the command just finishes (exit code as usual).
With N = 0 nothing is killed: the passes through every point are counted and written as JSON
to the file named by $KILLER_COUNTS at exit (how a reference run learns its write counts).
Nothing here is imported by prunekit: the hooks are installed by wrapping, for this process only.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path

POINTS = ("model-written", "files-written", "between-renames", "renamed", "json-rename")


def install(point: str, nth: int) -> None:
    """Wrap prunekit's writers so the process kills itself at the `nth` pass through `point`."""
    import prunekit.atomic as atomic
    from prunekit.train import checkpoint

    passes = dict.fromkeys(POINTS, 0)
    if nth == 0:
        atexit.register(lambda: Path(os.environ["KILLER_COUNTS"]).write_text(json.dumps(passes)))

    def hit(name: str) -> None:
        passes[name] += 1
        if name == point and passes[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    real_save_model = checkpoint.save_model

    def save_model(*args, **kwargs):
        real_save_model(*args, **kwargs)
        hit("model-written")

    class CheckpointOs:
        """`os` for prunekit.train.checkpoint, with the kill points around its renames."""

        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            src, dst = Path(src), Path(dst)
            if src.name.endswith(".old"):  # putting back a copy a kill left
                return os.replace(src, dst)
            if dst.name.endswith(".old"):
                hit("files-written")
                os.replace(src, dst)
                return hit("between-renames")
            if not dst.exists() and not dst.with_name(f".{dst.name}.old").exists():
                hit("files-written")  # the first save of this checkpoint: one rename only
            os.replace(src, dst)
            return hit("renamed")

    class AtomicOs:
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            if str(dst).endswith(".json"):
                hit("json-rename")
            return os.replace(src, dst)

    checkpoint.save_model = save_model
    checkpoint.os = CheckpointOs()
    atomic.os = AtomicOs()


def main() -> int:
    point, nth, *argv = sys.argv[1:]
    if point not in POINTS and point != "count":
        raise SystemExit(f"POINT must be one of {POINTS}")
    install(point, int(nth))
    from prunekit.cli.main import main as prunekit_main

    return prunekit_main(argv)


if __name__ == "__main__":
    sys.exit(main())
