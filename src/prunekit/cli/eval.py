"""`prunekit eval`: perplexity (per token and per word, with the tokens-per-word ratio and the OOV
rate), size and FLOPs of any language model prunekit writes — a checkpoint (dense or pruned), a
run folder, or a compact export from `prunekit export` — scored with the model's own tokenizer on
its training corpus, or with --corpus on another one."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from prunekit.config import parse_recipe
from prunekit.errors import PrunekitError
from prunekit.export import compact_size_report
from prunekit.pipelines.lm_artifact import LMArtifact, load_lm_artifact
from prunekit.pipelines.lm_baseline import evaluate, prepare_data
from prunekit.pipelines.lm_compress import measure
from prunekit.progress import note
from prunekit.seeding import seed_everything


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint or export", description=__doc__)
    p.add_argument(
        "checkpoint",
        help="checkpoint, run or export folder, e.g. runs/demo/baseline/checkpoints/best, "
        "runs/demo/prune/unstructured-taylor/checkpoints/last or an export folder",
    )
    p.add_argument("--corpus", help="score this corpus instead of the training one")
    p.add_argument("--tokenizer", help="tokenizer file (default: the one saved with the model)")
    p.add_argument("--bptt", type=int, help="window length (default: the run's train.bptt)")
    p.add_argument("--batch-size", type=int, help="rows (default: the run's eval_batch_size)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.set_defaults(func=run)


def eval_recipe(art: LMArtifact, corpus: str | None, bptt: int | None, batch: int | None):
    """The recipe to score with: the run's (when recorded), on `corpus`, at `bptt` x `batch`.

    Raises:
        PrunekitError: no corpus given and none recorded with the model.
    """
    raw: dict[str, Any] = dict(art.recipe or {})
    corpus = corpus or (raw.get("data") or {}).get("corpus")
    if not corpus:
        raise PrunekitError(
            f"{art.description['path']} does not record the corpus it was trained on: pass "
            "--corpus (a folder, a text file, 'shakespeare' or 'web-bible')"
        )
    overrides: dict[str, Any] = {"data.corpus": str(corpus)}
    if bptt is not None:
        overrides["train.bptt"] = bptt
    if batch is not None:
        overrides["train.eval_batch_size"] = batch
    return parse_recipe(raw, overrides)


def score_artifact(art: LMArtifact, cfg, *, progress: bool = True) -> dict[str, Any]:
    """Perplexities, OOV rate, size and FLOPs of a loaded artifact on `cfg`'s corpus."""
    if progress:
        note(f"tokenizing {cfg.data.corpus} with the model's own tokenizer")
    data = prepare_data(cfg, tokenizer=art.tokenizer)
    kind = art.description["kind"]
    if kind in ("pruned checkpoint", "low-rank checkpoint"):
        metrics = measure(art.model, data, cfg, progress=progress)
    else:
        metrics = evaluate(art.model, data, cfg, progress=progress)
    if kind == "compact export":
        metrics.update(compact_size_report(art.model))
    description = {k: v for k, v in art.description.items() if k != "recipe"}
    return {
        "artifact": description,
        "corpus": cfg.data.corpus,
        "vocab": data.vocab,
        "corpus_tokens": {s: int(getattr(data, s).numel()) for s in ("valid", "test")},
        "corpus_words": {s: data.words[s] for s in ("valid", "test")},
        **metrics,
    }


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    for name, least in (("bptt", 2), ("batch_size", 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            flag = name.replace("_", "-")
            raise PrunekitError(f"--{flag}={value} is too small: pass --{flag} {least} or more")
    note(f"loading {args.checkpoint}")
    art = load_lm_artifact(Path(args.checkpoint), tokenizer=args.tokenizer)
    cfg = eval_recipe(art, args.corpus, args.bptt, args.batch_size)
    seed_everything(cfg.train.seed)
    result = score_artifact(art, cfg)
    for key in ("valid_loss", "test_loss"):
        if not math.isfinite(result[key]):
            raise PrunekitError(
                f"{args.checkpoint} gives {key} {result[key]} (its outputs overflow: the run "
                "diverged): evaluate an earlier checkpoint, or retrain with a lower train.lr"
            )
    print(json.dumps(result, indent=1))
    return 0
