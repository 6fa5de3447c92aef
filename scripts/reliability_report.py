"""Turn the outcome log of `make test-faults` into benchmarks/results/reliability/.

    python scripts/reliability_report.py runs/reliability.jsonl benchmarks/results/reliability

Writes results.json (every logged case, grouped, with the machine and the commands) and
README.md (the tables). The log has one JSON line per kill trial, corruption, fuzz case,
divergence case, full-disk case and bad-input case (see tests/reliability/reliability_helpers.py).
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json, write_text
from prunekit.bench.markdown import bench_header
from prunekit.machine import machine_info

COMMAND = "make test-faults"
STEPS = [
    "PRUNEKIT_RELIABILITY_LOG=runs/reliability.jsonl nice -n 10 .venv/bin/pytest -p no:xdist "
    "-m 'slow or not slow' tests/reliability",
    "python scripts/reliability_report.py runs/reliability.jsonl benchmarks/results/reliability",
]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def kill_table(rows: list[dict[str, Any]]) -> list[str]:
    head = "| command | kill | killed | half-written after kill | rerun | differences | hidden leftovers | outcome |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        where = f"{r['mode']} #{r['nth']}" if "nth" in r else f"at {r['delay_s']} s"
        lines.append(
            f"| {r['case'].split(':')[0]} | {where} | {'yes' if r['killed'] else 'no (finished first)'} "
            f"| {len(r['half_written_after_kill'])} | exit {r['rerun_exit']} | {r['n_differences']} "
            f"| {len(r['hidden_leftovers'])} | {'ok' if r['ok'] else 'FAILED'}: {_cell(r['outcome'])} |"
        )
    return lines


def case_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| case | outcome | ok |", "|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {_cell(r['case'])} | {_cell(r['outcome'])} | {'yes' if r['ok'] else 'NO'} |"
        )
    return lines


def fuzz_table(rows: list[dict[str, Any]]) -> list[str]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        counts[r["case"]][r["outcome"] if r["ok"] else "FAILED"] += 1
    head = "| fuzzed input | cases | worked | one-line error | bytes unchanged by the mutation | failed |"
    lines = [head, "|---|---|---|---|---|---|"]
    for case, c in sorted(counts.items()):
        total = sum(c.values())
        lines.append(
            f"| {case} | {total} | {c['worked']} | {c['one-line error']} "
            f"| {c['unchanged by the mutation']} | {c['FAILED']} |"
        )
    return lines


SECTIONS = [
    ("kill", "Kill trials (SIGKILL, then the same command again)", kill_table),
    ("full disk", "Full disk", case_table),
    ("corruption", "Corrupted checkpoints", case_table),
    ("divergence", "Divergence", case_table),
    ("bad --out", "Bad output paths", case_table),
    ("bad input", "Bad input", case_table),
    ("fuzz", "Property-based fuzzing (hypothesis)", fuzz_table),
]


def main(log: str, out: str) -> int:
    records = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["category"]].append(r)
    machine = machine_info()
    summary = {
        cat: {"cases": len(rows), "ok": sum(r["ok"] for r in rows)} for cat, rows in groups.items()
    }
    write_json(
        Path(out) / "results.json",
        {
            "command": COMMAND,
            "steps": STEPS,
            "machine": machine,
            "summary": summary,
            "cases": groups,
        },
    )
    notes = [
        "",
        "`make test-faults` runs, at nice 10 and one thread per process:",
        "",
        *[f"    {s}" for s in STEPS],
        "",
        "Each kill trial runs the command, SIGKILLs it at a random moment or at the N-th pass through "
        "a point of a checkpoint / JSON write (`tests/reliability/killer.py`), checks that every "
        "visible checkpoint and JSON file is complete (sha256, strict JSON), reruns the same "
        "command to the end and compares the whole output folder with an uninterrupted run: every "
        "checkpoint tensor bit for bit (model, optimizer, RNG, pruner state) and every JSON value "
        "(timings excluded). Hidden leftovers are temp files a kill left (never read; a "
        "checkpoint's are removed by its next save).",
        "",
        "| category | cases | as required |",
        "|---|---|---|",
        *[f"| {cat} | {s['cases']} | {s['ok']} |" for cat, s in summary.items()],
    ]
    lines = bench_header(
        "Reliability: fault injection, corruption, fuzzing", COMMAND, machine, *notes
    )
    for cat, title, table in SECTIONS:
        if groups.get(cat):
            lines += ["", f"## {title}", "", *table(groups[cat])]
    write_text(Path(out) / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = sum(s["cases"] - s["ok"] for s in summary.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
