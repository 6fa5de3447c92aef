"""`prunekit bench`: benchmarks whose results land as JSON + Markdown under benchmarks/results/."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from prunekit.atomic import write_json, write_text
from prunekit.bench import train_throughput
from prunekit.cli.common import add_recipe_args, recipe_from_args
from prunekit.machine import machine_info
from prunekit.recipes import builtin


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark and save JSON + Markdown", description=__doc__
    )
    which = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    t = which.add_parser("train", help="trainer tokens/s vs a hand-written loop")
    add_recipe_args(t)
    t.add_argument("--steps", type=int, default=30, help="steps per repetition (default 30)")
    t.add_argument("--repeats", type=int, default=5, help="repetitions (default 5)")
    t.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    t.add_argument("--out", default="benchmarks/results", help="results folder")
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args, default=str(builtin("demo")))
    threads = [int(n) for n in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        result = train_throughput.measure(
            cfg, steps=args.steps, repeats=args.repeats, threads=threads, tmp=tmp
        )
    machine = machine_info()
    command = "prunekit " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    write_json(out / "train_throughput.json", {"command": command, "machine": machine, **result})
    markdown = train_throughput.to_markdown(result, machine, command)
    write_text(out / "train_throughput.md", markdown)
    print(markdown)
    return 0
