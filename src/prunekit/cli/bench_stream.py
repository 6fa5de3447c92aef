"""`prunekit bench stream`: streaming batch-1 latency (ms per 10 ms frame) of a recurrent
acoustic model, dense vs low-rank / sparse / structured / int8 variants and the torch-int8 and
onnxruntime peers. Writes `<out>/stream_<model>.json` and `.md` (machine and command included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from prunekit.atomic import write_json, write_text
from prunekit.bench.stream_latency import run_stream_bench, stream_markdown
from prunekit.bench.stream_models import stack_model
from prunekit.cli.bench_latency import _numbers
from prunekit.errors import PrunekitError
from prunekit.machine import machine_info


def add_stream_parser(which: argparse._SubParsersAction) -> None:
    """Add the `stream` benchmark to the `bench` sub-subparsers `which`."""
    p = which.add_parser(
        "stream", help="streaming ms per 10 ms frame of an RNN acoustic model and its variants",
        description=__doc__,
    )  # fmt: skip
    p.add_argument("--model", choices=("stack", "ctc"), default="stack",
                   help="stack: FrameStackRNN stand-in; ctc: prunekit's CTC model, streaming")  # fmt: skip
    p.add_argument("--config", default="{}", help='model fields as JSON, e.g. \'{"cell": "lstm"}\'')
    p.add_argument("--sizes", default="0.1", help="kept fractions of the scope, e.g. 0.25,0.1")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (1,2)")
    p.add_argument("--frames", type=int, default=100, help="10 ms frames per repetition (100)")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions (20)")
    p.add_argument("--int8-policy", choices=("all", "fastest"), default="all",
                   help="int8 for every layer of the +int8 variants, or where measured faster")  # fmt: skip
    p.add_argument("--trained", metavar="WORK",
                   help="with --model ctc: time the models `bench am-compress` trained in WORK "
                        "(writes stream_ctc_trained.json / .md)")  # fmt: skip
    p.add_argument("--out", default="benchmarks/results", help="results folder")
    p.set_defaults(func=run_stream)


def _model(kind: str, config: dict):
    if kind == "stack":
        return stack_model(config)
    from prunekit.models import build_model

    return build_model({"arch": "ctc", **config, "streaming": True}).eval()


def run_stream(args: argparse.Namespace) -> int:
    if args.trained:
        from prunekit.cli.bench_am import run_trained_stream_cli

        return run_trained_stream_cli(args)
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise PrunekitError(
            f"--config {args.config!r} is not JSON ({exc}): pass e.g. '{{}}'"
        ) from None
    model = _model(args.model, config)
    fractions = _numbers(args.sizes, float, "sizes")
    threads = _numbers(args.threads, int, "threads")

    def say(message: str) -> None:
        print(f"[bench stream] {message}", file=sys.stderr, flush=True)

    result = run_stream_bench(
        model, fractions=fractions, threads=threads, frames=args.frames, repeats=args.repeats,
        progress=say, int8_policy=args.int8_policy,
    )  # fmt: skip
    resolved = (
        dataclasses.asdict(model.config) if dataclasses.is_dataclass(model.config) else config
    )
    result = {"model": args.model, "config": resolved, **result}
    command = "prunekit " + shlex.join(sys.argv[1:])
    machine = machine_info()
    out = Path(args.out)
    write_json(
        out / f"stream_{args.model}.json", {"command": command, "machine": machine, **result}
    )
    markdown = stream_markdown(result, machine, command)
    write_text(out / f"stream_{args.model}.md", markdown + "\n")
    print(markdown)
    return 0
