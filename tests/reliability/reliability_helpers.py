"""Shared by the reliability tests: run the CLI, compare runs tensor by tensor, log outcomes.

With PRUNEKIT_RELIABILITY_LOG=<file> set (as `make test-faults` does), every trial, corruption,
fuzz case, divergence case and full-disk case appends one JSON line there;
`scripts/reliability_report.py` turns that log into benchmarks/results/reliability/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

# Keys whose values are timings or facts about the invocation, not results of the computation.
TIMING_WORDS = ("second", "_at", "machine", "command", "git_commit", "invocations", "resumed_from")


def record(category: str, case: str, outcome: str, ok: bool, **detail: Any) -> None:
    """Append one outcome to $PRUNEKIT_RELIABILITY_LOG (nothing when it is unset)."""
    log = os.environ.get("PRUNEKIT_RELIABILITY_LOG")
    if not log:
        return
    line = {"category": category, "case": case, "outcome": outcome, "ok": ok, **detail}
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=str) + "\n")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a prunekit subprocess: one thread, the test run's cache."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def cli_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "prunekit.cli.main", *map(str, argv)]


def run_cli(*argv: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run `prunekit *argv` in a subprocess and return it (stdout / stderr as text)."""
    env = kwargs.pop("env", None) or cli_env()
    return subprocess.run(
        cli_command(*argv), env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str | None:
    """The error line if `proc` failed the prunekit way (exit 2, one line, no traceback)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode != 2 or "Traceback" in proc.stderr or not lines:
        return None
    errors = [ln for ln in lines if ln.startswith("prunekit ") and ": error: " in ln]
    return errors[0] if len(errors) == 1 and errors[0] == lines[-1] else None


def json_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ, ignoring timing / invocation keys."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if any(w in key for w in TIMING_WORDS):
                continue
            if key not in a or key not in b:
                out.append(f"{path}/{key} (missing on one side)")
            else:
                out += json_differences(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (lengths {len(a)} vs {len(b)})"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in json_differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def tensor_differences(a: Path, b: Path) -> list[str]:
    """Names of tensors that differ between two safetensors files (bit for bit)."""
    x, y = load_file(str(a)), load_file(str(b))
    if set(x) != set(y):
        return [f"{a.name}: tensor names differ: {sorted(set(x) ^ set(y))[:4]}"]
    return [f"{a.name}:{k}" for k in sorted(x) if not torch.equal(x[k], y[k])]


def checkpoint_differences(a: Path, b: Path) -> list[str]:
    """Every difference between two checkpoint folders: tensors bit for bit, state.json by key."""
    out = []
    for name in ("model.safetensors", "extra.safetensors"):
        out += tensor_differences(a / name, b / name)
    state_a = json.loads((a / "state.json").read_text())
    state_b = json.loads((b / "state.json").read_text())
    state_a.pop("files"), state_b.pop("files")  # hashes of files compared above (rng included)
    out += [f"state.json{d}" for d in json_differences(state_a, state_b)]
    return out


def run_differences(a: Path, b: Path) -> list[str]:
    """Compare two run folders: every checkpoint tensor by tensor, every JSON file key by key."""
    out: list[str] = []
    names = {p.relative_to(a) for p in a.rglob("*") if not _hidden(p.relative_to(a))}
    others = {p.relative_to(b) for p in b.rglob("*") if not _hidden(p.relative_to(b))}
    for rel in sorted(names ^ others):
        out.append(f"{rel}: only in {'the first' if rel in names else 'the second'} run")
    for rel in sorted(names & others):
        pa, pb = a / rel, b / rel
        if pa.is_dir() and (pa / "state.json").is_file():
            out += [f"{rel}: {d}" for d in checkpoint_differences(pa, pb)]
        elif pa.suffix == ".json" and pa.name != "state.json":
            out += [f"{rel}{d}" for d in json_differences(_json(pa, a), _json(pb, b))]
    return out


def _hidden(rel: Path) -> bool:
    """Lock files and the leftovers a kill may leave (temp files are hidden)."""
    return any(part.startswith(".") for part in rel.parts) or rel.suffix in (".png", ".md")


def _json(path: Path, root: Path | None = None) -> Any:
    """A JSON file's value; with `root`, the paths it records inside `root` read "<run>/..."."""
    text = path.read_text(encoding="utf-8")
    if root is not None:
        text = text.replace(json.dumps(str(root))[1:-1], "<run>")
    return json.loads(text, parse_constant=_no_nan)


def _no_nan(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def prune_section(**kw: Any) -> dict[str, Any]:
    """A seconds-long incremental prune section (two sizes, so a milestone checkpoint too)."""
    return {"name": "u", "steps": 8, "frequency": 2, "ramp": 0.5, "sizes": [0.5, 0.3], **kw}


def tiny_recipe_file(folder: Path, recipe: dict[str, Any], name: str = "recipe.yaml") -> Path:
    """Write a recipe dict as a YAML (JSON is YAML) file and return its path."""
    path = folder / name
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path
