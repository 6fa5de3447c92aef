"""`prunekit asr`: the speech main job. Builds (once, cached) the speech corpus and its log-mel
features, trains the CTC acoustic model, the fused NNLM (on the spoken form of the text) and the
density-ratio source LM, tunes the fusion weights on dev, decodes test without an LM, with the LM
and with LM - internal LM, and writes metrics.json + report.md: WER / CER for seen and unseen
voices, MAPSSWE significance, WER by word frequency, 1-thread real-time factors. Rerunning the
same command continues where it stopped."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from prunekit.atomic import write_json
from prunekit.cli.common import parse_overrides
from prunekit.config.asr import load_asr_recipe
from prunekit.machine import machine_info
from prunekit.pipelines.asr_run import run_asr
from prunekit.report.asr import LABELS, pct, signed_pct, write_asr_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "asr", help="the speech main job: corpus, acoustic model, LMs, fused decoding, WER",
        description=__doc__,
    )  # fmt: skip
    p.add_argument("--recipe", help="speech recipe: YAML file or built-in name (default asr_demo)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set am.train.steps=500 (repeatable)",
    )  # fmt: skip
    p.add_argument("--out", default="runs/asr", help="run folder (default: runs/asr)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a run exists")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (also when called in-process)."""
    parts = ["prunekit", "asr"]
    if args.recipe:
        parts += ["--recipe", args.recipe]
    for pair in args.set:
        parts += ["--set", pair]
    return shlex.join([*parts, "--out", str(args.out)])


def run(args: argparse.Namespace) -> int:
    recipe = load_asr_recipe(args.recipe, parse_overrides(args.set))
    out = Path(args.out)
    metrics = run_asr(recipe, out, resume=not args.no_resume, progress=args.progress)
    machine, command = machine_info(), command_line(args)
    write_json(out / "metrics.json", {**metrics, "command": command, "machine": machine})
    report = write_asr_report(metrics, out, machine, command)
    for name, s in metrics["systems"].items():
        r = s["rates"]
        print(
            f"{LABELS.get(name, name)}: WER {pct(r['all']['wer'])} % (seen voices "
            f"{pct(r['seen_voices']['wer'])} %, unseen {pct(r['unseen_voices']['wer'])} %), "
            f"decode RTF {s['timing']['rtf']:.3f}"
        )
    for name, change in metrics["wer_change_vs_no_lm"].items():
        print(f"{LABELS.get(name, name)} vs no LM, unseen voices: "
              f"{signed_pct(change['unseen_voices'])}")  # fmt: skip
    print(f"report: {report}", file=sys.stdout)
    return 0
