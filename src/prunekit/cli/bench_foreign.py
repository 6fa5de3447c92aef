"""`prunekit bench foreign`: models prunekit did not build, end to end (see prunekit.bench.foreign).

Hugging Face GPT-2, a user's LSTM LM, a Conv1d + GRU CTC model and Hugging Face Wav2Vec2ForCTC,
each pruned (unstructured, structured, factorized; + int8), compacted, saved and loaded into a
fresh model, compared and timed at batch 1 against the fastest dense path. Writes
`<out>/foreign.json` and `foreign.md` (`foreign_tiny.*` with --tiny), machine info and the exact
command included.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from prunekit.atomic import write_json, write_text
from prunekit.bench.foreign_models import MODELS
from prunekit.cli.bench_latency import _numbers
from prunekit.errors import PrunekitError
from prunekit.machine import machine_info


def add_foreign_parser(which: argparse._SubParsersAction) -> None:
    """Add the `foreign` benchmark to the `bench` sub-subparsers `which`."""
    p = which.add_parser(
        "foreign",
        help="models prunekit did not build (HF GPT-2, Wav2Vec2, an LSTM, a Conv+GRU): "
        "compact, save/load, outputs, speed",
        description=__doc__,
    )
    p.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated ({','.join(MODELS)})"
    )
    p.add_argument(
        "--methods", default="unstructured,structured,factorized", help="comma-separated methods"
    )
    p.add_argument("--sparsity", type=float, default=0.75, help="scope sparsity (0.75)")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 rows")
    p.add_argument("--no-timing", action="store_true", help="correctness columns only")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (1,2)")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions (20)")
    p.add_argument("--tiny", action="store_true", help="toy sizes of the same models (tests)")
    p.add_argument("--out", default="benchmarks/results", help="results folder")
    p.set_defaults(func=run_foreign)


def _check(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from prunekit.bench.foreign import METHODS

    models = [m for m in args.models.split(",") if m]
    methods = [m for m in args.methods.split(",") if m]
    for value, allowed, flag in ((models, MODELS, "models"), (methods, METHODS, "methods")):
        bad = [v for v in value if v not in allowed]
        if bad or not value:
            raise PrunekitError(
                f"--{flag} {getattr(args, flag)!r} has {bad or 'nothing'}: choose from "
                f"{','.join(allowed)}"
            )
    if not 0.0 < args.sparsity < 1.0:
        raise PrunekitError(f"--sparsity {args.sparsity} must be in (0, 1), e.g. 0.75")
    if args.repeats < 1:
        raise PrunekitError(f"--repeats {args.repeats} must be >= 1, e.g. 20")
    return models, methods


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this invocation (also when called in-process)."""
    parts = ["prunekit", "bench", "foreign", "--models", args.models, "--methods", args.methods]
    parts += ["--sparsity", str(args.sparsity), "--threads", args.threads]
    parts += ["--repeats", str(args.repeats), "--out", args.out]
    for flag in ("no_int8", "no_timing", "tiny"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)


def run_foreign(args: argparse.Namespace) -> int:
    from prunekit.bench import foreign

    models, methods = _check(args)
    threads = _numbers(args.threads, int, "threads")
    result = foreign.measure(
        models, methods=methods, sparsity=args.sparsity, int8=not args.no_int8,
        timing=not args.no_timing, threads=threads, repeats=args.repeats,
        compact_repeats=2 if args.tiny else 20, tiny=args.tiny,
    )  # fmt: skip
    command = _command(args)
    machine = machine_info()
    name = "foreign_tiny" if args.tiny else "foreign"
    out = Path(args.out)
    write_json(out / f"{name}.json", {"command": command, "machine": machine, **result})
    markdown = foreign.to_markdown(result, machine, command)
    write_text(out / f"{name}.md", markdown)
    print(markdown)
    return 0
