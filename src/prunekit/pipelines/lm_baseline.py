"""The baseline experiment: corpus -> tokenizer -> model -> trained checkpoint -> metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.atomic import write_json
from prunekit.config import RunConfig
from prunekit.data import LMBatches, Tokenizer, build_tokenizer, load_corpus
from prunekit.data.tokenizers import EOS, UNK
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.eval.perplexity import score_tokens
from prunekit.eval.size import size_report
from prunekit.models import build_model, model_config
from prunekit.pipelines.lm_artifact import TOKENIZER_FILE
from prunekit.pipelines.run_binding import (
    bind,
    bound_train,
    corpus_sha256,
    data_fingerprint,
    record_steps,
)
from prunekit.progress import note, progress_bar
from prunekit.train.checkpoint import (
    load_checkpoint,
    read_checkpoint_state,
    restore_interrupted,
)
from prunekit.train.distributed import World, barrier
from prunekit.train.task import LMTask
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass
class LMData:
    """A corpus turned into token streams, with the word counts needed for per-word perplexity."""

    tokenizer: Tokenizer
    train: torch.Tensor  # (N_train,) int64
    valid: torch.Tensor  # (N_valid,)
    test: torch.Tensor  # (N_test,)
    words: dict[str, int]  # split -> number of words (incl. one end-of-sentence per line)
    corpus_sha256: str = ""  # of the corpus text (see `run_binding.corpus_sha256`)
    vocab: dict[str, Any] = field(default_factory=dict)  # see `vocab_info`

    def unk_rate(self, split: str) -> float:
        """Share of the split's tokens that are `<unk>` (the OOV rate for a word vocabulary)."""
        tokens = getattr(self, split)
        return float((tokens == self.tokenizer.unk_id).sum()) / max(1, tokens.numel())


def vocab_info(tok: Tokenizer, train_text: str, cap: int | None) -> dict[str, Any]:
    """What the report says about the vocabulary: kind, size, and for words the cap and how many
    distinct train words there are."""
    info: dict[str, Any] = {"kind": tok.kind, "size": tok.vocab_size}
    if tok.kind == "word":
        types = set(train_text.split()) - {UNK, EOS}
        info.update(cap=cap or None, train_words=len(types))
    return info


def prepare_data(cfg: RunConfig, tokenizer: Tokenizer | None = None) -> LMData:
    """Load the recipe's corpus and tokenize it.

    Args:
        cfg: the recipe (its `data` section).
        tokenizer: use this one (e.g. a model's own) instead of building one from the train
            split (trained on train only, cached by content).
    """
    note(f"data: reading {cfg.data.corpus}")
    corpus = load_corpus(cfg.data.corpus, text=cfg.data.text)
    tok = tokenizer or build_tokenizer(
        cfg.data.tokenizer,
        corpus.train,
        cfg.data.vocab_size,
        model_type=cfg.data.spm_model_type,
    )
    splits = {name: getattr(corpus, name) for name in SPLITS}
    streams = {
        name: tok.encode_corpus(text)
        for name, text in progress_bar(splits.items(), "data: tokenize")
    }
    words = {name: tok.count_words(text) for name, text in splits.items()}
    if tokenizer is None:
        vocab = vocab_info(tok, corpus.train, cfg.data.vocab_size)
    else:  # built on another text: this corpus's train words say nothing about it
        vocab = {"kind": tok.kind, "size": tok.vocab_size, "built_on": "the model's own corpus"}
    return LMData(
        tokenizer=tok, words=words, corpus_sha256=corpus_sha256(corpus), vocab=vocab, **streams
    )


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
    model: nn.Module,
    data: LMData,
    cfg: RunConfig,
    *,
    world: World = World(),
    progress: bool = False,
) -> dict[str, Any]:
    """Perplexities on valid and test (per token and per word, with the tokens-per-word ratio
    and the OOV rate), parameter counts, size in bytes and FLOPs per token."""
    out: dict[str, Any] = {}
    for split in ("valid", "test"):
        tokens = getattr(data, split)
        score = score_tokens(
            model,
            tokens,
            batch_size=cfg.train.eval_batch_size,
            bptt=cfg.train.bptt,
            world=world,
            progress=f"scoring {split}" if progress else None,
        )
        out[f"{split}_loss"] = score.loss
        out[f"{split}_ppl"] = score.ppl
        out[f"{split}_tokens_per_word"] = tokens.numel() / max(1, data.words[split])
        out[f"{split}_oov_rate"] = data.unk_rate(split)
        if data.tokenizer.kind != "word":
            out[f"{split}_word_ppl"] = score.word_ppl(tokens.numel(), data.words[split])
    out.update(size_report(model))
    out["flops_per_token"] = flops_per_token(model, context_len=(cfg.train.bptt + 1) // 2)
    return out


def _check_steps(done: int, cfg: RunConfig, out_dir: Path) -> None:
    if done > cfg.train.steps:
        raise PrunekitError(
            f"{out_dir} already holds a model trained {done:,} steps, more than "
            f"train.steps={cfg.train.steps:,}: pass --no-resume to train {cfg.train.steps:,} "
            "steps from scratch, or --out DIR for a new run"
        )


def _note_continuation(trainer: Trainer, cfg: RunConfig, last: Path, record, out_dir: Path):
    """Record the planned total; warn when a resumed run continues under another total."""
    steps = cfg.train.steps
    if trainer.step:
        planned = read_checkpoint_state(last)["state"]["train_config"]["steps"]
        if planned != steps:
            log.warning(
                "%s: continuing from step %d to %d steps (it was planned for %d; the "
                "learning-rate schedule now spans %d steps, so the model differs from a fresh "
                "%d-step run, which --no-resume gives)",
                out_dir, trainer.step, steps, planned, steps, steps,
            )  # fmt: skip
    record_steps(out_dir, record, trainer.step, steps)


def train_baseline(
    cfg: RunConfig,
    out_dir: Path,
    *,
    data: LMData | None = None,
    world: World = World(),
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the recipe's model on its corpus, then evaluate the best checkpoint.

    Resumes from out_dir/checkpoints/last when it exists (and `resume`) and the folder's
    fingerprint matches this corpus and recipe (`run_binding`). More `train.steps` than the
    folder's run was planned for continue it; fewer than it has done are an error. Returns the
    metrics dict, also written to out_dir/metrics.json on the main rank.

    Args:
        data: the prepared corpus (prepared from the recipe when None).

    Raises:
        PrunekitError: the folder holds another run, or more steps than train.steps.
    """
    torch.set_num_threads(cfg.train.threads)
    data = data or prepare_data(cfg)
    model = build_lm(cfg, data.tokenizer.vocab_size)
    binding = {
        **data_fingerprint(cfg, data.corpus_sha256),
        "model": model_config(model),
        "train": bound_train(cfg),
    }
    out_dir = Path(out_dir)
    record = bind(out_dir, binding, resume=resume, write=world.is_main)
    trainer = Trainer(
        model,
        lm_task(data, cfg),
        cfg.train,
        out_dir,
        world=world,
        progress=progress,
        run_state={"recipe": cfg.model_dump(mode="json")},
        files={TOKENIZER_FILE: data.tokenizer.to_bytes()},
        label=f"train {cfg.name}",
    )
    last = trainer.checkpoint_dir / "last"
    if resume and restore_interrupted(last):
        log.info("resuming from %s", last)
        trainer.resume(last)
    _check_steps(trainer.step, cfg, out_dir)
    if world.is_main:
        _note_continuation(trainer, cfg, last, record, out_dir)
    started = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - started
    barrier(world)  # rank 0 writes the checkpoints
    best = trainer.checkpoint_dir / "best"
    load_checkpoint(best, model)
    metrics = evaluate(model, data, cfg, world=world)
    metrics.update(
        {
            "name": cfg.name,
            "steps": trainer.step,
            "best_step": read_checkpoint_state(best)["state"]["step"],
            "steps_history": record["steps_history"],
            "tokens_seen": history.tokens_seen,
            "train_seconds": history.train_seconds,
            "train_tokens_per_second": history.tokens_seen / max(1e-9, history.train_seconds),
            "wall_seconds_this_call": wall,
            "vocab_size": data.tokenizer.vocab_size,
            "vocab": data.vocab,
            "corpus_tokens": {s: int(getattr(data, s).numel()) for s in SPLITS},
            "corpus_words": data.words,
            "corpus_sha256": data.corpus_sha256,
            "threads": cfg.train.threads,
            "world_size": world.size,
            "history": {"train": history.train, "valid": history.valid},
            "recipe": cfg.model_dump(mode="json"),
            "checkpoint": str(best),
        }
    )
    if world.is_main:
        data.tokenizer.save(out_dir / TOKENIZER_FILE)
        write_json(out_dir / "metrics.json", metrics)
    return metrics
