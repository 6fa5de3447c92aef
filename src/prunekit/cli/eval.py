"""`prunekit eval`: perplexity, size and FLOPs of a checkpoint on its corpus (or another one)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from prunekit.config import parse_recipe
from prunekit.errors import PrunekitError
from prunekit.models import build_model
from prunekit.pipelines.lm_baseline import evaluate, prepare_data
from prunekit.seeding import seed_everything
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint", description=__doc__)
    p.add_argument("checkpoint", help="checkpoint folder, e.g. runs/demo/baseline/checkpoints/best")
    p.add_argument("--corpus", help="evaluate on this corpus instead of the training one")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    path = Path(args.checkpoint)
    state = read_checkpoint_state(path)["state"]
    recipe = state["run"]["recipe"]
    if args.corpus:
        recipe["data"]["corpus"] = args.corpus
    cfg = parse_recipe(recipe)
    seed_everything(cfg.train.seed)
    data = prepare_data(cfg)
    model = build_model(state["model_config"])
    load_checkpoint(path, model)
    result = evaluate(model, data, cfg)
    for key in ("valid_loss", "test_loss"):
        if not math.isfinite(result[key]):
            raise PrunekitError(
                f"checkpoint {path} gives {key} {result[key]} (its outputs overflow: the run "
                "diverged): evaluate an earlier checkpoint, or retrain with a lower train.lr"
            )
    print(json.dumps(result, indent=1))
    return 0
