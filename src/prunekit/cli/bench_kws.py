"""`prunekit bench kws`: seed 002's Table 1 row (keyword spotting) or, with --lm, its LM row.

Table: trains FastGRNN (LSQ+Q), FastGRNN-LSQ (without LSQ), FastRNN, RNN, GRU, LSTM and EdgeML's
FastGRNN on Google-12 keyword clips, then writes <out>/kws.json and kws.md. --data: `speech` (the
default: Speech Commands-shaped clips synthesized by the audio layer, built once and cached),
the path of a Speech Commands folder, or `toy` (a synthetic temporal-pattern task, not speech).
Settings: --set KEY=VALUE over the bench spec (epochs, hidden, w_rank, u_rank, s_w, s_u,
rows=gru,lstm, ...). Rows finished before under --work are reused (with their saved models).
Timings need an idle machine: --no-timing trains and measures accuracy and size only;
--timing-only then times the saved models without training.

LM row (--lm): a FastGRNN LM vs a one-layer LSTM LM on the recipe's corpus (--recipe, default the
built-in fastgrnn_lm; --set then overrides the recipe), written to <out>/lm.json and lm.md.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from prunekit.atomic import write_json, write_text
from prunekit.cli.common import parse_overrides
from prunekit.machine import machine_info


def add_kws_parser(which: argparse._SubParsersAction) -> None:
    """Add the `kws` benchmark to the `bench` sub-subparsers `which`."""
    p = which.add_parser(
        "kws",
        help="seed 002 Table 1: FastGRNN (LSQ+Q) vs RNN/GRU/LSTM/EdgeML on keyword clips",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", help="speech (default), toy, or a Speech Commands folder")
    p.add_argument("--lm", action="store_true", help="run the LM row instead of the table")
    p.add_argument("--recipe", help="with --lm: YAML recipe (default: built-in fastgrnn_lm)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a bench setting (or, with --lm, a recipe key); repeatable")  # fmt: skip
    p.add_argument("--out", default="benchmarks/results/kws", help="results folder")
    p.add_argument("--work", default="runs/bench-kws", help="checkpoints and finished rows")
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--no-timing", action="store_true",
                      help="skip the per-clip timings (a shared machine)")  # fmt: skip
    when.add_argument("--timing-only", action="store_true",
                      help="time the rows trained before under --work; train nothing")  # fmt: skip
    p.set_defaults(func=run_kws)


def run_kws(args: argparse.Namespace) -> int:
    command = _command(args)
    if args.lm:
        return _run_lm(args, command)
    from prunekit.bench.kws import run_kws_bench
    from prunekit.bench.kws_data import load_data
    from prunekit.bench.kws_report import to_markdown
    from prunekit.bench.kws_spec import KWSBenchSpec

    overrides = parse_overrides(args.set)
    if args.data:
        overrides["data"] = args.data
    spec = KWSBenchSpec.from_overrides(overrides)
    data = load_data(spec.data, spec.seed)

    def show(row: str, status: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} [{status}] {row}", flush=True)

    timing = "skip" if args.no_timing else "only" if args.timing_only else "run"
    result = run_kws_bench(
        data, spec, args.work, timing=timing, on_row=show, progress=args.progress
    )
    machine = machine_info()
    out = Path(args.out)
    write_json(out / "kws.json", {"command": command, "machine": machine, **result})
    markdown = to_markdown(result, machine, command)
    write_text(out / "kws.md", markdown)
    print(markdown)
    return 0


def _run_lm(args: argparse.Namespace, command: str) -> int:
    from prunekit.bench.kws_lm import lm_markdown, run_lm_rows
    from prunekit.config import load_recipe
    from prunekit.recipes import builtin

    cfg = load_recipe(args.recipe or builtin("fastgrnn_lm"), parse_overrides(args.set))
    result = run_lm_rows(cfg, Path(args.work) / "lm", progress=args.progress)
    machine = machine_info()
    out = Path(args.out)
    write_json(out / "lm.json", {"command": command, "machine": machine, **result})
    markdown = lm_markdown(result, machine, command)
    write_text(out / "lm.md", markdown)
    print(markdown)
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line of an in-process call."""
    parts = ["prunekit", "bench", "kws"]
    for flag in ("data", "recipe", "out", "work"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    for pair in args.set:
        parts += ["--set", pair]
    parts += ["--lm"] if args.lm else []
    parts += ["--no-timing"] if getattr(args, "no_timing", False) else []
    parts += ["--timing-only"] if getattr(args, "timing_only", False) else []
    return shlex.join(parts)
