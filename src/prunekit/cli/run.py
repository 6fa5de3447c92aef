"""`prunekit run`: the main job. Trains the baseline Transformer NNLM on the default corpus (or
--data), prunes it incrementally (data-driven; unstructured and factorized) to 50 / 25 / 10 % of
its size, evaluates each model, measures each compact model's batch-1 decode speed against the
fastest dense path, and writes a run folder with metrics, report.md and plots.

A rerun into the same --out continues the same run; a different corpus or model fails with one
line (use another --out, or --no-resume to replace it); more train.steps extend the run."""

from __future__ import annotations

import argparse
import shlex
import sys

from prunekit.cli.common import add_recipe_args, check_out_dir, recipe_from_args
from prunekit.pipelines.lm_run import run_main, write_report
from prunekit.seeding import seed_everything


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="the main job: train, prune, evaluate, report", description=__doc__
    )
    add_recipe_args(p)
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a run exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    out = check_out_dir(args.out)
    seed_everything(cfg.train.seed)
    result = run_main(cfg, out, resume=not args.no_resume)
    command = "prunekit " + shlex.join(getattr(args, "argv", sys.argv[1:]))
    write_report(result, out, command)
    base = result["baseline"]
    print(
        f"baseline: valid ppl {base['valid_ppl']:.2f}, test ppl {base['test_ppl']:.2f}, "
        f"{base['params']:,} params, {base['train_tokens_per_second']:,.0f} tokens/s"
    )
    for r in result["compressed"]:
        speed = f", {r['decode_speedup']:.2f}x decode speed" if "decode_speedup" in r else ""
        when = ""
        if "pruned_at_step" in r:
            when = f", step {r['pruned_at_step']:,} + {r['finetune_steps']:,} fine-tuning"
        print(
            f"{r['variant']}: {r['effective_params']:,} params "
            f"({100 * r['size_fraction']:.1f} %{when}), valid ppl {r['valid_ppl']:.2f}{speed}"
        )
    print(f"report: {out / 'report.md'}")
    return 0
