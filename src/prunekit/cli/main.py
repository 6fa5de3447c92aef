"""`prunekit` command line: one small module per subcommand, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys

from prunekit import __version__
from prunekit.cli import asr as asr_cmd
from prunekit.cli import bench as bench_cmd
from prunekit.cli import eval as eval_cmd
from prunekit.cli import export as export_cmd
from prunekit.cli import prune as prune_cmd
from prunekit.cli import report as report_cmd
from prunekit.cli import run as run_cmd
from prunekit.cli import speech_data as speech_data_cmd
from prunekit.cli import train as train_cmd
from prunekit.cli import transcribe as transcribe_cmd
from prunekit.errors import PrunekitError

SUBCOMMANDS = (
    run_cmd,
    train_cmd,
    prune_cmd,
    export_cmd,
    eval_cmd,
    bench_cmd,
    report_cmd,
    speech_data_cmd,
    asr_cmd,
    transcribe_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="prunekit",
        description="Prune, factorize and quantize language models, and measure what it buys.",
    )
    parser.add_argument("--version", action="version", version=f"prunekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn a PrunekitError into one line on stderr + exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for reports: the command given
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PrunekitError as exc:
        print(f"prunekit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
