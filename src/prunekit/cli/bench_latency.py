"""`prunekit bench latency`: decode / scoring latency of every compressed variant vs dense.

Registered on `prunekit bench`'s benchmarks by `add_latency_parser(which)`. Writes
`<out>/latency_<model>.json` and `.md` (machine info and the exact command included).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from prunekit.atomic import write_json, write_text
from prunekit.bench.latency_suite import SUITE_MODELS, run_suite, suite_markdown
from prunekit.cli.common import check_out_dir
from prunekit.errors import PrunekitError
from prunekit.machine import machine_info


def add_latency_parser(which: argparse._SubParsersAction) -> None:
    """Add the `latency` benchmark to the `bench` sub-subparsers `which`."""
    p = which.add_parser(
        "latency",
        help="CPU decode/scoring latency: dense, masked, compact, int8 and peers",
        description=__doc__,
    )
    p.add_argument("--model", choices=(*SUITE_MODELS, "both"), default="both")
    p.add_argument("--sizes", default="0.1", help="kept fractions of the scope, e.g. 0.5,0.1")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (1,2)")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions (20)")
    p.add_argument("--context", type=int, default=32, help="decode context tokens (32)")
    p.add_argument("--steps", type=int, default=8, help="timed decode steps per repetition (8)")
    p.add_argument("--scoring-batch", type=int, default=4, help="scoring batch size (4)")
    p.add_argument("--scoring-len", type=int, default=16, help="scoring sequence length (16)")
    p.add_argument("--out", default="benchmarks/results", help="results folder")
    p.set_defaults(func=run_latency)


def _numbers(text: str, kind: type, name: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise PrunekitError(f"--{name} {text!r} must be comma-separated numbers, e.g. 1,2")
    return values


def _progress(message: str) -> None:
    print(f"[bench latency] {message}", file=sys.stderr, flush=True)


def run_latency(args: argparse.Namespace) -> int:
    models = list(SUITE_MODELS) if args.model == "both" else [args.model]
    sizes = _numbers(args.sizes, float, "sizes")
    threads = _numbers(args.threads, int, "threads")
    command = "prunekit " + shlex.join(sys.argv[1:])
    machine = machine_info()
    out = check_out_dir(args.out)
    for model in models:
        _progress(f"{model}: building the variants")
        result = run_suite(
            model, sizes=sizes, threads=threads, repeats=args.repeats, context=args.context,
            steps=args.steps, scoring_batch=args.scoring_batch, scoring_len=args.scoring_len,
            progress=_progress,
        )  # fmt: skip
        markdown = suite_markdown(result, machine, command)
        write_json(
            out / f"latency_{model}.json", {"command": command, "machine": machine, **result}
        )
        write_text(out / f"latency_{model}.md", markdown + "\n")
        print(markdown)
    return 0
