"""Kill trials: run a prunekit command, SIGKILL it (at a random moment or inside a write), rerun
it to the end, and compare the result with an uninterrupted run, tensor by tensor and metric by
metric (`reliability_helpers.run_differences`)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reliability_helpers import cli_command, cli_env, record, run_differences

from prunekit.export.io import file_sha256
from prunekit.train.checkpoint import read_checkpoint_state

KILLER = Path(__file__).with_name("killer.py")
MODES = ("time", "model-written", "files-written", "between-renames", "renamed", "json-rename")


@dataclass
class Reference:
    """An uninterrupted run: its command line (without --out), folder, wall time and how often
    it passed each kill point."""

    argv: list[str]
    out: Path
    seconds: float
    passes: dict[str, int]


def run_to_end(argv: list[str], out: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """`prunekit ARGV --out OUT` to completion (nice 10: these trials are background work)."""
    cmd = ["nice", "-n", "10", *cli_command(*argv, "--out", out)]
    return subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def reference(argv: list[str], out: Path) -> Reference:
    """Run once without interruption, counting its passes through every kill point."""
    counts = out.with_name(out.name + "-passes.json")
    cmd = ["nice", "-n", "10", sys.executable, str(KILLER), "count", "0"]
    cmd += [*map(str, argv), "--out", str(out)]
    started = time.perf_counter()
    env = cli_env(KILLER_COUNTS=str(counts))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seconds = time.perf_counter() - started
    return Reference(list(map(str, argv)), out, seconds, json.loads(counts.read_text()))


def plan(trial: int, ref: Reference) -> dict[str, Any]:
    """What trial number `trial` does: a random moment, or the n-th pass through a write point."""
    rng = random.Random(f"{ref.argv[0]}-{trial}")
    mode = MODES[trial % len(MODES)]
    if mode == "time":
        return {"mode": mode, "delay_s": round(rng.uniform(0.15, 0.9) * ref.seconds, 2)}
    return {"mode": mode, "nth": rng.randint(1, max(1, ref.passes[mode]))}


def _kill(argv: list[str], out: Path, how: dict[str, Any]) -> int:
    """Run the command and kill it as `how` says; return its exit code (-9 when killed)."""
    if how["mode"] != "time":
        cmd = ["nice", "-n", "10", sys.executable, str(KILLER), how["mode"], str(how["nth"])]
        cmd += [*map(str, argv), "--out", str(out)]
        return subprocess.run(cmd, env=cli_env(), capture_output=True, timeout=1200).returncode
    cmd = ["nice", "-n", "10", *cli_command(*argv, "--out", out)]
    proc = subprocess.Popen(
        cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=how["delay_s"])
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def integrity_problems(out: Path) -> list[str]:
    """Files a kill left half-written: visible checkpoints failing their sha256, invalid JSON."""
    problems = []
    for state in out.rglob("state.json"):
        folder = state.parent
        if any(part.startswith(".") for part in folder.relative_to(out).parts):
            continue  # a temp folder: never read by prunekit
        try:
            meta = read_checkpoint_state(folder)
            for name, sha in meta.get("files", {}).items():
                if file_sha256(folder / name) != sha:
                    problems.append(f"{folder / name}: sha256 mismatch")
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            problems.append(f"{folder}: {exc}")
    for path in out.rglob("*.json"):
        if path.name == "state.json" or any(p.startswith(".") for p in path.relative_to(out).parts):
            continue
        try:
            json.loads(path.read_text(), parse_constant=_refuse)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{path}: {exc}")
    return problems


def kill_trial(command: str, ref: Reference, trial: int, out: Path) -> dict[str, Any]:
    """One trial: kill, check what is on disk, rerun to the end, compare with the reference."""
    how = plan(trial, ref)
    killed = _kill(ref.argv, out, how)
    broken = integrity_problems(out) if out.exists() else []
    resumed = run_to_end(ref.argv, out)
    leftovers = sorted(
        str(p.relative_to(out))
        for p in out.rglob(".*")
        if p.name != ".lock" and not any(q.startswith(".") for q in p.relative_to(out).parent.parts)
    )
    diffs = run_differences(ref.out, out) if resumed.returncode == 0 else ["rerun failed"]
    result = {
        **how,
        "killed": killed == -signal.SIGKILL,
        "exit_after_kill": killed,
        "half_written_after_kill": broken,
        "rerun_exit": resumed.returncode,
        "rerun_error": resumed.stderr.strip().splitlines()[-1:] if resumed.returncode else [],
        "differences": diffs[:10],
        "n_differences": len(diffs),
        "hidden_leftovers": leftovers,
    }
    ok = resumed.returncode == 0 and not diffs and not broken
    outcome = "identical to the uninterrupted run" if ok else f"{len(diffs)} difference(s)"
    where = how.get("nth", how.get("delay_s"))
    record("kill", f"{command}: {how['mode']} {where}", outcome, ok, **result)
    return result
