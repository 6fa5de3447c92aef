"""`prunekit train`: train a language model from a recipe (one process, or under torchrun)."""

from __future__ import annotations

import argparse
import json
import shutil

from prunekit.cli.common import add_recipe_args, check_out_dir, recipe_from_args
from prunekit.pipelines.lm_baseline import train_baseline
from prunekit.pipelines.lm_narang import narang_section, train_narang
from prunekit.seeding import seed_everything
from prunekit.train.distributed import close_world, init_world


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a language model from a recipe",
        description="Train a language model. Under `torchrun --nproc_per_node N` it runs DDP "
        "(gloo). A rerun into the same --out continues the run: more train.steps extend it; a "
        "different corpus, model or training setting, or fewer steps than done, fail with one "
        "line (use another --out, or --no-resume to start over).",
    )
    add_recipe_args(p)
    p.add_argument("--out", default="runs/train", help="run folder (default: runs/train)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last checkpoint")
    p.add_argument(
        "--prune", metavar="NAME",
        help="prune while training, by the recipe's `schedule: narang` section NAME (Narang et al.)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    out = check_out_dir(args.out)
    seed_everything(cfg.train.seed)  # the same on every rank: dropout masks stay in step
    if args.prune:  # one process; resumes from <out>/checkpoints/last unless --no-resume
        section = narang_section(cfg, args.prune)
        if args.no_resume:  # start over: drop the last checkpoint and a finished result
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
            (out / "result.json").unlink(missing_ok=True)
        result = train_narang(cfg, section, out)
        keys = ("valid_ppl", "test_ppl", "sparsity", "effective_params")
        print(json.dumps({k: result[k] for k in keys}, indent=1))
        return 0
    world = init_world()
    try:
        metrics = train_baseline(cfg, out, world=world, resume=not args.no_resume)
    finally:
        close_world(world)
    if world.is_main:
        keys = ("valid_ppl", "test_ppl", "params", "train_tokens_per_second")
        print(json.dumps({k: metrics[k] for k in keys}, indent=1))
    return 0
