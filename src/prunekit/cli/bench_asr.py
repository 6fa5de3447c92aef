"""`prunekit bench asr`: the parser and the command (registered by `prunekit.cli.bench`)."""

from __future__ import annotations

import argparse
import shlex
import time

from prunekit.bench import asr as asr_bench
from prunekit.cli.common import parse_overrides
from prunekit.errors import PrunekitError


def add_asr_parser(which: argparse._SubParsersAction) -> None:
    p = which.add_parser(
        "asr", help="seed 004's Tables 4-6: WER with pruned NNLMs in shallow fusion",
        description=asr_bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--asr", default="runs/asr", help="a finished `prunekit asr` run (runs/asr)")
    p.add_argument("--recipe", help="paper recipe of the LMs: file or built-in name (paper)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override the paper recipe, e.g. --set paper.prune.steps=300 (repeatable)",
    )  # fmt: skip
    p.add_argument("--out", default="runs/asr-bench", help="bench folder (runs/asr-bench)")
    p.add_argument("--grid", help="an existing spoken-form paper grid to take the LMs from")
    p.add_argument("--cells", metavar="GLOB", help="comma-separated globs over decode cell ids")
    p.add_argument(
        "--t5-sizes",
        default="0.5,0.1",
        help="Table 5/6 sizes (default 0.5,0.1: the paper's 10M of 20M, and 10 %%)",
    )
    p.add_argument("--tune-utterances", type=int, default=100,
                   help="dev utterances the fusion weights are tuned on per LM (default 100; "
                   "0 = all)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=2, help="decode cells at a time (default 2)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their cost")
    p.add_argument("--no-report", action="store_true", help="do not rebuild tables.md after")
    p.set_defaults(func=run_asr_bench)


def _command(args: argparse.Namespace) -> str:
    parts = ["prunekit", "bench", "asr", "--asr", args.asr, "--out", args.out]
    for flag in ("recipe", "grid", "cells"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    for pair in args.set:
        parts += ["--set", pair]
    parts += ["--t5-sizes", args.t5_sizes, "--tune-utterances", str(args.tune_utterances)]
    return shlex.join(parts + ["--jobs", str(args.jobs)])


def bench_args(args: argparse.Namespace) -> asr_bench.BenchArgs:
    """The BenchArgs of the command line.

    Raises:
        PrunekitError: a bad --t5-sizes, --jobs or --tune-utterances.
    """
    try:
        sizes = tuple(float(x) for x in args.t5_sizes.split(",") if x.strip())
    except ValueError:
        raise PrunekitError(f"--t5-sizes {args.t5_sizes!r}: give fractions, e.g. 0.5,0.1") from None
    if not sizes or args.jobs < 1 or args.tune_utterances < 0:
        raise PrunekitError(
            "--t5-sizes needs at least one size, --jobs >= 1, --tune-utterances >= 0: fix the flag"
        )
    return asr_bench.BenchArgs(
        asr=args.asr, out=args.out, recipe=args.recipe, overrides=parse_overrides(args.set),
        grid=args.grid, t5_sizes=sizes, tune_utterances=args.tune_utterances, jobs=args.jobs,
        command=_command(args),
    )  # fmt: skip


def run_asr_bench(args: argparse.Namespace) -> int:
    from prunekit.machine import machine_info
    from prunekit.report.asr_bench import build_asr_report

    bench = asr_bench.open_bench(bench_args(args))
    if args.dry_run:
        print(asr_bench.dry_run(bench))
        return 0

    def show(cell_id: str, status: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} [{status}] {cell_id}", flush=True)

    summary = asr_bench.run_bench(bench, args.cells, on_cell=show)
    print(f"decoded {len(summary['ran'])} cell(s), skipped {len(summary['skipped'])} finished")
    if not args.no_report:
        paths = build_asr_report(bench.out, command=f"prunekit report {shlex.quote(args.out)}",
                                 machine=machine_info())  # fmt: skip
        print(f"report: {paths['tables']}")
    return 0
