"""`prunekit prune`: compress a trained checkpoint as a recipe's `prune` sections say."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.atomic import write_json
from prunekit.cli.common import parse_overrides
from prunekit.config import load_recipe, parse_recipe
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import prepare_data
from prunekit.pipelines.lm_compress import check_sections, compress, load_trained, measure
from prunekit.report.compression import compression_table
from prunekit.train.checkpoint import read_checkpoint_state


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune / factorize a trained checkpoint", description=__doc__)
    p.add_argument(
        "checkpoint", help="trained checkpoint folder, e.g. runs/demo/baseline/checkpoints/best"
    )
    p.add_argument("--recipe", required=True, help="YAML recipe with a `prune:` list of sections")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--out", default="runs/prune", help="output folder (default: runs/prune)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    trained = read_checkpoint_state(path)["state"]
    sections = load_recipe(args.recipe).prune
    if not sections:
        raise PrunekitError(f"recipe {args.recipe} has no `prune:` sections: add at least one")
    # Data, model and training settings come from the checkpoint (the tokenizer must match).
    raw = {**trained["run"]["recipe"], "prune": [s.model_dump(mode="json") for s in sections]}
    cfg = parse_recipe(raw, parse_overrides(args.set))
    check_sections(cfg, load_trained(path))
    data = prepare_data(cfg)
    rows = [r for s in cfg.prune for r in compress(cfg, s, path, data, Path(args.out) / s.name)]
    write_json(Path(args.out) / "results.json", {"checkpoint": str(path), "rows": rows})
    print(compression_table(measure(load_trained(path), data, cfg), rows))
    return 0
