"""The baseline experiment: corpus -> tokenizer -> model -> trained checkpoint -> metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.config import RunConfig
from prunekit.data import LMBatches, Tokenizer, build_tokenizer, load_corpus
from prunekit.eval.flops import flops_per_token
from prunekit.eval.perplexity import score_tokens
from prunekit.eval.size import size_report
from prunekit.models import build_model
from prunekit.progress import note, progress_bar
from prunekit.train.checkpoint import load_checkpoint, restore_interrupted
from prunekit.train.distributed import World, barrier
from prunekit.train.task import LMTask
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class LMData:
    """A corpus turned into token streams, with the word counts needed for per-word perplexity."""

    tokenizer: Tokenizer
    train: torch.Tensor  # (N_train,) int64
    valid: torch.Tensor  # (N_valid,)
    test: torch.Tensor  # (N_test,)
    words: dict[str, int]  # split -> number of words (incl. one end-of-sentence per line)


def prepare_data(cfg: RunConfig) -> LMData:
    """Load the recipe's corpus and tokenize it (tokenizer trained on train only, cached)."""
    note(f"data: reading {cfg.data.corpus}")
    corpus = load_corpus(cfg.data.corpus, text=cfg.data.text)
    tok = build_tokenizer(
        cfg.data.tokenizer,
        corpus.train,
        cfg.data.vocab_size,
        model_type=cfg.data.spm_model_type,
    )
    splits = {"train": corpus.train, "valid": corpus.valid, "test": corpus.test}
    streams = {
        name: tok.encode_corpus(text)
        for name, text in progress_bar(splits.items(), "data: tokenize")
    }
    words = {name: tok.count_words(text) for name, text in splits.items()}
    return LMData(tokenizer=tok, words=words, **streams)


def build_lm(cfg: RunConfig, vocab_size: int) -> nn.Module:
    """Build the recipe's model for a vocabulary of `vocab_size`, seeded by train.seed."""
    torch.manual_seed(cfg.train.seed)
    return build_model({**cfg.model, "vocab_size": vocab_size})


def lm_task(data: LMData, cfg: RunConfig) -> LMTask:
    """The Trainer's task for the recipe: `data.train` windows, perplexity on `data.valid`."""
    batches = LMBatches(data.train, cfg.train.batch_size, cfg.train.bptt)
    return LMTask(
        batches, data.valid, eval_batch_size=cfg.train.eval_batch_size, bptt=cfg.train.bptt
    )


def evaluate(
    model: nn.Module, data: LMData, cfg: RunConfig, *, world: World = World()
) -> dict[str, Any]:
    """Perplexities on valid and test, parameter counts, size in bytes and FLOPs per token."""
    out: dict[str, Any] = {}
    for split in ("valid", "test"):
        tokens = getattr(data, split)
        score = score_tokens(
            model, tokens, batch_size=cfg.train.eval_batch_size, bptt=cfg.train.bptt, world=world
        )
        out[f"{split}_loss"] = score.loss
        out[f"{split}_ppl"] = score.ppl
        if data.tokenizer.kind != "word":
            out[f"{split}_word_ppl"] = score.word_ppl(tokens.numel(), data.words[split])
    out.update(size_report(model))
    out["flops_per_token"] = flops_per_token(model, context_len=(cfg.train.bptt + 1) // 2)
    return out


def train_baseline(
    cfg: RunConfig,
    out_dir: Path,
    *,
    world: World = World(),
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the recipe's model on its corpus, then evaluate the best checkpoint.

    Resumes from out_dir/checkpoints/last when it exists (and `resume`). Returns the metrics dict,
    also written to out_dir/metrics.json on the main rank.
    """
    torch.set_num_threads(cfg.train.threads)
    data = prepare_data(cfg)
    model = build_lm(cfg, data.tokenizer.vocab_size)
    trainer = Trainer(
        model,
        lm_task(data, cfg),
        cfg.train,
        out_dir,
        world=world,
        progress=progress,
        run_state={"recipe": cfg.model_dump(mode="json")},
        label=f"train {cfg.name}",
    )
    last = trainer.checkpoint_dir / "last"
    if resume and restore_interrupted(last):
        log.info("resuming from %s", last)
        trainer.resume(last)
    started = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - started
    barrier(world)  # rank 0 writes the checkpoints
    load_checkpoint(trainer.checkpoint_dir / "best", model)
    metrics = evaluate(model, data, cfg, world=world)
    metrics.update(
        {
            "name": cfg.name,
            "steps": trainer.step,
            "tokens_seen": history.tokens_seen,
            "train_seconds": history.train_seconds,
            "train_tokens_per_second": history.tokens_seen / max(1e-9, history.train_seconds),
            "wall_seconds_this_call": wall,
            "vocab_size": data.tokenizer.vocab_size,
            "corpus_tokens": {s: int(getattr(data, s).numel()) for s in ("train", "valid", "test")},
            "corpus_words": data.words,
            "threads": cfg.train.threads,
            "world_size": world.size,
            "history": {"train": history.train, "valid": history.valid},
            "recipe": cfg.model_dump(mode="json"),
        }
    )
    if world.is_main:
        data.tokenizer.save(out_dir / "tokenizer.model")
        write_json(out_dir / "metrics.json", metrics)
    return metrics
