"""`prunekit report DIR`: rebuild a paper grid's tables.md, results.json and plots from its cell
JSONs alone (no model is loaded)."""

from __future__ import annotations

import argparse
import shlex

from prunekit.machine import machine_info
from prunekit.report.paper import build_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="tables and plots of a `bench paper` grid from its JSON", description=__doc__
    )
    p.add_argument("folder", help="the grid folder (the --out of `prunekit bench paper`)")
    p.add_argument(
        "--metric",
        default="valid_ppl",
        help="perplexity shown in the tables: valid_ppl (default), test_ppl, valid_word_ppl, ...",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if (Path(args.folder) / "bench.json").is_file():  # a `prunekit bench asr` folder
        from prunekit.report.asr_bench import build_asr_report

        command = shlex.join(["prunekit", "report", str(args.folder)])
        for name, path in build_asr_report(args.folder, command=command).items():
            print(f"{name}: {path}")
        return 0
    command = shlex.join(["prunekit", "report", str(args.folder), "--metric", args.metric])
    paths = build_report(args.folder, metric=args.metric, command=command, machine=machine_info())
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
