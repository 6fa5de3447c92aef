"""`prunekit report DIR`: rebuild a paper grid's tables.md, results.json and plots from its cell
JSONs alone (no model is loaded), or a `bench asr` folder's. `prunekit report A B --compare`: which of seed 004's findings
hold on both grids (e.g. two corpora), as a Markdown table."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from prunekit.atomic import write_text
from prunekit.errors import PrunekitError
from prunekit.machine import machine_info
from prunekit.report.paper import build_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="tables and plots of a `bench paper` grid from its JSON", description=__doc__
    )
    p.add_argument(
        "folder", nargs="+", help="the grid folder (the --out of `prunekit bench paper`)"
    )
    p.add_argument(
        "--metric",
        default="valid_ppl",
        help="perplexity shown in the tables: valid_ppl (default), test_ppl, valid_word_ppl, ...",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="with two grid folders or more: one table of the paper's findings on each",
    )
    p.add_argument("--out", help="with --compare: write the Markdown here (default: print it)")
    p.add_argument(
        "--flat-epochs",
        type=float,
        default=3.0,
        help="Fig. 2: the gap is flat once it moves less than --flat-points within every window "
        "of this many epochs (default 3)",
    )
    p.add_argument(
        "--flat-points",
        type=float,
        default=1.0,
        help="Fig. 2: tolerance of 'flat', in percentage points (default 1)",
    )
    p.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    parts = ["prunekit", "report", *map(str, args.folder), "--metric", args.metric]
    if args.compare:
        parts.append("--compare")
    if (args.flat_epochs, args.flat_points) != (3.0, 1.0):
        parts += [
            "--flat-epochs",
            f"{args.flat_epochs:g}",
            "--flat-points",
            f"{args.flat_points:g}",
        ]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    flat = (args.flat_epochs, args.flat_points)
    if flat[0] <= 0 or flat[1] <= 0:
        raise PrunekitError("--flat-epochs and --flat-points must be > 0: pass positive numbers")
    if args.compare:
        from prunekit.report.paper_compare import compare_grids

        text = compare_grids(args.folder, args.metric, flat)
        text = f"{text}\nBuilt by `{_command(args)}` at commit `{machine_info()['git_commit']}`.\n"
        if args.out:
            write_text(args.out, text)
            print(f"compare: {args.out}")
        else:
            print(text)
        return 0
    if len(args.folder) != 1 or args.out:
        raise PrunekitError(
            "pass one grid folder (several, and --out, only go with --compare): "
            "prunekit report DIR, or prunekit report A B --compare"
        )
    if (Path(args.folder[0]) / "bench.json").is_file():  # a `prunekit bench asr` folder
        from prunekit.report.asr_bench import build_asr_report

        command = shlex.join(["prunekit", "report", str(args.folder[0])])
        for name, path in build_asr_report(args.folder[0], command=command).items():
            print(f"{name}: {path}")
        return 0
    command = _command(args)
    paths = build_report(
        args.folder[0], metric=args.metric, command=command, machine=machine_info(), flat=flat
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
