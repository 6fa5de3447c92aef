"""`prunekit bench`: benchmarks whose results land as JSON + Markdown under benchmarks/results/."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from prunekit.atomic import write_json, write_text
from prunekit.bench import paper as paper_bench
from prunekit.bench import prune_overhead, train_throughput
from prunekit.bench.paper_cells import Cell, plan_cells, select
from prunekit.bench.paper_latency import fill_latency
from prunekit.bench.paper_spec import load_paper_recipe
from prunekit.cli.bench_am import add_am_parser
from prunekit.cli.bench_asr import add_asr_parser
from prunekit.cli.bench_foreign import add_foreign_parser
from prunekit.cli.bench_kws import add_kws_parser
from prunekit.cli.bench_latency import add_latency_parser
from prunekit.cli.bench_stream import add_stream_parser
from prunekit.cli.common import add_recipe_args, check_out_dir, parse_overrides, recipe_from_args
from prunekit.machine import machine_info
from prunekit.seeding import seed_everything


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark and save JSON + Markdown", description=__doc__
    )
    which = p.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    _add_training_bench(which, "train", "trainer tokens/s vs a hand-written loop", 30, run_train)
    _add_paper_parser(which)
    add_latency_parser(which)
    add_stream_parser(which)
    add_kws_parser(which)
    add_foreign_parser(which)
    add_am_parser(which)
    add_asr_parser(which)
    _add_training_bench(
        which,
        "prune-overhead",
        "training step with masks + scores vs without",
        20,
        run_prune_overhead,
    )


def _add_training_bench(which, name: str, help: str, steps: int, func) -> None:
    """A training benchmark's parser: recipe, --steps, --repeats, --threads, --out."""
    p = which.add_parser(name, help=help)
    add_recipe_args(p)
    p.add_argument(
        "--steps", type=int, default=steps, help=f"steps per repetition (default {steps})"
    )
    p.add_argument("--repeats", type=int, default=5, help="repetitions (default 5)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--out", default="benchmarks/results", help="results folder")
    p.set_defaults(func=func)


def _run_training_bench(args: argparse.Namespace, module, name: str) -> int:
    """Measure with `module.measure`, save `name`.json/.md under --out, print the Markdown."""
    cfg = recipe_from_args(args)
    check_out_dir(args.out)
    threads = [int(n) for n in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        result = module.measure(
            cfg, steps=args.steps, repeats=args.repeats, threads=threads, tmp=tmp
        )
    machine = machine_info()
    command = "prunekit " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    write_json(out / f"{name}.json", {"command": command, "machine": machine, **result})
    markdown = module.to_markdown(result, machine, command)
    write_text(out / f"{name}.md", markdown)
    print(markdown)
    return 0


def run_train(args: argparse.Namespace) -> int:
    return _run_training_bench(args, train_throughput, "train_throughput")


def run_prune_overhead(args: argparse.Namespace) -> int:
    return _run_training_bench(args, prune_overhead, "prune_overhead")


def _add_paper_parser(which: argparse._SubParsersAction) -> None:
    p = which.add_parser(
        "paper",
        help="seed 004's Tables 1-3, Fig. 2 and Fig. 3 as one resumable grid",
        description=paper_bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--recipe", help="paper recipe: a YAML file or a built-in name (default: paper; paper_tiny)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. --set data.corpus=DIR or --set paper.fig2.epochs=2 (repeatable)",
    )
    p.add_argument(
        "--out", help="grid folder (default: runs/paper-<recipe name>[-<corpus folder name>])"
    )
    p.add_argument("--cells", metavar="GLOB", help="comma-separated globs over cell ids")
    p.add_argument(
        "--dry-run", action="store_true", help="list the cells, their status and estimated cost"
    )
    p.add_argument(
        "--latency",
        action="store_true",
        help="only time batch-1 decoding of finished cells (fills decode_ms_per_token)",
    )
    p.add_argument("--remeasure", action="store_true", help="with --latency: time cells again")
    p.add_argument("--no-report", action="store_true", help="do not rebuild tables.md after")
    p.add_argument(
        "--progress", action="store_true", help="progress bars for baseline/scratch/Fig. 2-3 runs"
    )
    p.set_defaults(func=run_paper)


def _paper_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this invocation (also when called in-process)."""
    parts = ["prunekit", "bench", "paper"]
    for flag in ("recipe", "out", "cells"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    for pair in args.set:
        parts += ["--set", pair]
    for flag in ("dry_run", "latency", "remeasure", "no_report"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)


def run_paper(args: argparse.Namespace) -> int:
    from prunekit.report.paper import build_report

    cfg, paper = load_paper_recipe(args.recipe, parse_overrides(args.set))
    corpus = cfg.data.corpus
    suffix = "" if corpus == "shakespeare" else "-" + Path(corpus).stem
    out = check_out_dir(args.out or f"runs/paper-{cfg.name}{suffix}")
    seed_everything(cfg.train.seed)  # and each cell from its own seed (`run_cell`)
    command = _paper_command(args)
    grid = paper_bench.open_grid(cfg, paper, out, command, progress=args.progress)
    if args.dry_run:
        cells = select(plan_cells(paper), args.cells)
        print(paper_bench.format_plan(paper_bench.describe(grid, cells), cfg.train.threads))
        return 0
    if args.latency:
        cells = select(plan_cells(paper), args.cells)
        with paper_bench.grid_lock(out):
            done = fill_latency(grid, cells, remeasure=args.remeasure)
        print(f"timed {len(done)} cell(s)")
    else:

        def show(cell: Cell, status: str) -> None:
            print(f"{time.strftime('%H:%M:%S')} [{status}] {cell.id}", flush=True)

        summary = paper_bench.run_grid(grid, args.cells, on_cell=show)
        print(f"ran {len(summary['ran'])} cell(s), skipped {len(summary['skipped'])} finished")
        if summary.get("regenerated"):
            lost = ", ".join(summary["regenerated"])
            print(f"ran again for their lost checkpoints (records kept): {lost}")
    if not args.no_report and (out / "cells" / "baseline.json").is_file():
        report_cmd = f"prunekit report {shlex.quote(str(out))}"
        paths = build_report(out, command=report_cmd, machine=machine_info())
        print(f"report: {paths['tables']}")
    return 0
