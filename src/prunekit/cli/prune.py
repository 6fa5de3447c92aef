"""`prunekit prune`: compress a trained checkpoint as a recipe's `prune` sections say.

The recipe (a YAML file or a built-in name such as `demo`) gives the `prune` sections and, if
it has one, the `train` section (batch size, threads, seed, checkpoint_every, ...); otherwise the
checkpoint's. Data and model always are the checkpoint's: a recipe `data` or `model` section (or
a --set) that differs from them is refused, since the weights and tokenizer would not fit.
Under `torchrun --nproc_per_node N` the fine-tuning runs DDP (gloo) with the same global batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json
from prunekit.cli.common import check_out_dir, parse_overrides
from prunekit.config import RunConfig, parse_recipe
from prunekit.config.recipe import read_recipe_yaml
from prunekit.errors import PrunekitError
from prunekit.models.registry import ARCHS
from prunekit.pipelines.lm_baseline import prepare_data
from prunekit.pipelines.lm_compress import check_sections, compress, load_trained, measure
from prunekit.recipes import resolve_recipe
from prunekit.report.compression import compression_table
from prunekit.seeding import seed_everything
from prunekit.train.checkpoint import read_checkpoint_state
from prunekit.train.distributed import barrier, close_world, init_world


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="prune / factorize a trained checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint", help="trained checkpoint folder, e.g. runs/demo/baseline/checkpoints/best"
    )
    p.add_argument(
        "--recipe", required=True, help="recipe with a `prune:` list: a YAML file or e.g. demo"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--out", default="runs/prune", help="output folder (default: runs/prune)")
    p.set_defaults(func=run)


def _normal_model(model: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """A model section with every default filled in, for comparison (invalid: as given)."""
    fields = {k: v for k, v in model.items() if k != "arch"}
    if model.get("arch") not in ARCHS:
        return dict(model)
    try:
        config = ARCHS[model["arch"]][0].from_dict({**fields, "vocab_size": vocab_size})
    except PrunekitError:
        return dict(model)
    return {"arch": model["arch"], **config.to_dict()}


def _first_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            return f"{key}={ours.get(key)!r}, the checkpoint's {theirs.get(key)!r}"
    return None


def prune_recipe(state: dict[str, Any], recipe: str, overrides: dict[str, Any]) -> RunConfig:
    """The recipe a prune run follows: `recipe`'s prune (and train) sections on the checkpoint's
    data and model.

    Raises:
        PrunekitError: no prune sections, a checkpoint without a recipe, or data / model
            settings that differ from the checkpoint's (naming the first key).
    """
    trained = (state.get("run") or {}).get("recipe")
    if not isinstance(trained, dict):
        raise PrunekitError(
            "the checkpoint has no recipe in its state.json: prune a checkpoint written by "
            "`prunekit train` or `prunekit run`"
        )
    path = resolve_recipe(recipe, "demo")
    raw = read_recipe_yaml(path)
    given = parse_recipe(raw, overrides)  # validates the recipe and the overrides
    if not given.prune:
        raise PrunekitError(f"recipe {recipe} has no `prune:` sections: add at least one")
    base = parse_recipe(trained)
    cfg = parse_recipe({**trained, **raw}, overrides)  # the recipe's sections replace the run's
    vocab = int((state.get("model_config") or {}).get("vocab_size", 0))
    for section in ("data", "model"):
        a, b = getattr(cfg, section), getattr(base, section)
        if section == "model":
            a, b = _normal_model(a, vocab), _normal_model(b, vocab)
        else:
            a, b = a.model_dump(mode="json"), b.model_dump(mode="json")
        diff = _first_difference(a, b)
        if diff is not None:
            raise PrunekitError(
                f"recipe {recipe} sets {section}.{diff}: a checkpoint is pruned with the data "
                f"and model it was trained on; drop `{section}:` from the recipe (and any "
                f"--set {section}.*) or prune a checkpoint trained with these settings"
            )
    return cfg


def run(args: argparse.Namespace) -> int:
    path, out = Path(args.checkpoint), check_out_dir(args.out)
    state = read_checkpoint_state(path)["state"]
    cfg = prune_recipe(state, args.recipe, parse_overrides(args.set))
    check_sections(cfg, load_trained(path))
    seed_everything(cfg.train.seed)
    data = prepare_data(cfg)
    world = init_world()
    try:
        rows = [
            r for s in cfg.prune for r in compress(cfg, s, path, data, out / s.name, world=world)
        ]
        dense = measure(load_trained(path), data, cfg, world=world)
        barrier(world)
    finally:
        close_world(world)
    if world.is_main:
        write_json(out / "results.json", {"checkpoint": str(path), "rows": rows})
        print(compression_table(dense, rows))
    return 0
