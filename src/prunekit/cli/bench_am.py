"""`prunekit bench am-compress`: seeds 000 (trace norm vs l2 + SVD) and 001 (Narang's ramp) on the
CTC acoustic model, as a resumable grid of cells.

Each finished cell is <work>/cells/<id>.json; a killed cell resumes from its checkpoints under
<work>/runs/<id>/. Run the same command once per core to share the cells (each process claims
one at a time). The report (<out>/am_compress.md, results.json, Pareto plots) is rebuilt after
every invocation from the finished cells. Settings: --recipe (a YAML file; default the built-in
am_compress) and --set KEY=VALUE (e.g. --set bench.train_utterances=1000).
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from prunekit.cli.common import parse_overrides
from prunekit.machine import machine_info


def add_am_parser(which: argparse._SubParsersAction) -> None:
    """Add the `am-compress` benchmark to the `bench` sub-subparsers `which`."""
    p = which.add_parser(
        "am-compress", help="seeds 000 + 001 on the CTC acoustic model (resumable cells)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--recipe", help="bench settings: YAML file or built-in name (am_compress)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. bench.eval_splits=[dev] (repeatable)")  # fmt: skip
    p.add_argument("--work", default="runs/am-compress", help="cells, runs and checkpoints")
    p.add_argument("--out", default="benchmarks/results/am_compress", help="report folder")
    p.add_argument("--cells", metavar="GLOB", help="comma-separated globs over cell ids")
    p.add_argument("--dry-run", action="store_true", help="list cells, status and estimated cost")
    p.add_argument("--report", action="store_true", help="only rebuild the report")
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    p.set_defaults(func=run_am)


def _command(args: argparse.Namespace) -> str:
    parts = ["prunekit", "bench", "am-compress"]
    for flag in ("recipe", "work", "out", "cells"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    for pair in args.set:
        parts += ["--set", pair]
    parts += [f"--{f.replace('_', '-')}" for f in ("dry_run", "report") if getattr(args, f)]
    return shlex.join(parts)


def run_am(args: argparse.Namespace) -> int:
    from prunekit.audio import speech_features
    from prunekit.audio.corpus import with_text_corpus
    from prunekit.bench.am_compress import open_grid, run_am_grid
    from prunekit.bench.am_dry_run import describe, format_plan
    from prunekit.bench.am_report import build_am_report
    from prunekit.bench.am_spec import load_am_spec
    from prunekit.config.asr import text_corpus

    spec = load_am_spec(args.recipe, parse_overrides(args.set))
    command = _command(args)
    work, out = Path(args.work), Path(args.out)
    if not args.report:
        feats = speech_features(
            with_text_corpus(spec.speech, text_corpus(spec)), progress=args.progress
        )
        grid = open_grid(spec, feats, work, command, progress=args.progress)
        if args.dry_run:
            print(format_plan(describe(grid, args.cells)))
            return 0

        def show(cell, status: str) -> None:
            print(f"{time.strftime('%H:%M:%S')} [{status}] {cell.id}", flush=True)

        summary = run_am_grid(grid, args.cells, on_cell=show)
        print(f"ran {len(summary['ran'])} cell(s), {len(summary['skipped'])} finished before, "
              f"{len(summary['others'])} by other processes")  # fmt: skip
    paths = build_am_report(work, out, spec, command=command, machine=machine_info())
    print(f"report: {paths['markdown']}")
    return 0


def run_trained_stream_cli(args: argparse.Namespace) -> int:
    """`bench stream --model ctc --trained WORK`: time the trained variants, write the results
    (stream_ctc_trained.json / .md in --out) and rebuild nothing else."""
    import sys

    from prunekit.atomic import write_json, write_text
    from prunekit.bench.am_latency import run_trained_stream, trained_markdown
    from prunekit.cli.bench_latency import _numbers
    from prunekit.errors import PrunekitError

    if args.model != "ctc":
        raise PrunekitError("--trained times trained CTC models: add --model ctc")

    def say(message: str) -> None:
        print(f"[bench stream] {message}", file=sys.stderr, flush=True)

    result = run_trained_stream(
        args.trained, threads=tuple(_numbers(args.threads, int, "threads")), frames=args.frames,
        repeats=args.repeats, int8_policy=args.int8_policy, progress=say,
    )  # fmt: skip
    command = "prunekit " + shlex.join(sys.argv[1:])
    machine = machine_info()
    out = Path(args.out)
    write_json(out / "stream_ctc_trained.json", {"command": command, "machine": machine, **result})
    markdown = trained_markdown(result, machine, command)
    write_text(out / "stream_ctc_trained.md", markdown + "\n")
    print(markdown)
    return 0
