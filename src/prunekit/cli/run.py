"""`prunekit run`: the main job. Trains the baseline Transformer NNLM on the default corpus and writes
a run folder with metrics.json, report.md and curves.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.atomic import write_text
from prunekit.cli.common import add_recipe_args, recipe_from_args
from prunekit.experiment import train_baseline
from prunekit.machine import machine_info
from prunekit.recipes import builtin
from prunekit.report.baseline import baseline_markdown
from prunekit.report.plots import plot_curves


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the main job: train, evaluate, report", description=__doc__)
    add_recipe_args(p)
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a run exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args, default=str(builtin("demo")))
    out = Path(args.out)
    metrics = train_baseline(cfg, out / "baseline", resume=not args.no_resume)
    plot_curves(metrics["history"]["train"], metrics["history"]["valid"], out / "curves.png")
    write_text(out / "report.md", baseline_markdown(metrics, machine_info()))
    print(
        f"baseline: valid ppl {metrics['valid_ppl']:.2f}, test ppl {metrics['test_ppl']:.2f}, "
        f"{metrics['params']:,} params, {metrics['train_tokens_per_second']:,.0f} tokens/s "
        f"-> {out / 'report.md'}"
    )
    return 0
