"""Perplexity of a language model over a token stream (per token, and per word for subword units)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import prunekit.progress as pk_progress
from prunekit.train.distributed import World, all_reduce_sum


@dataclass(frozen=True)
class LMScore:
    """Summed negative log-likelihood over `tokens` scored tokens (nats)."""

    nll: float
    tokens: int

    @property
    def loss(self) -> float:
        return self.nll / max(1, self.tokens)

    @property
    def ppl(self) -> float:
        return math.exp(min(self.loss, 50.0))

    def word_ppl(self, total_tokens: int, words: int) -> float:
        """Per-word perplexity: exp(nll scaled to all `total_tokens` / `words`).

        The few tokens that do not fill a row are not scored; they are assumed to have the mean loss.
        """
        return math.exp(min(self.loss * total_tokens / max(1, words), 50.0))


@torch.no_grad()
def score_tokens(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    batch_size: int,
    bptt: int,
    world: World = World(),
    progress: str | None = None,
) -> LMScore:
    """Score a 1-D token stream: `batch_size` contiguous rows, windows of `bptt` (the last may be short).

    Args:
        model: maps idx (B, T) to logits (B, T, V).
        tokens: (N,) int64 token stream.
        progress: a label to show a progress bar with (on stderr, when it is a terminal), or
            None for none.
    Returns:
        LMScore summed over every predicted token; windows are split across DDP ranks.
    """
    rows = tokens.numel() // batch_size
    data = tokens[: rows * batch_size].view(batch_size, rows)  # (B, N)
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    starts = range(0, rows - 1, bptt)
    shown = progress is not None and world.is_main and pk_progress.shown()
    bar = tqdm(total=len(starts), desc=progress, unit="window", disable=not shown, leave=False)
    for w, start in enumerate(starts):
        bar.update(1)
        if w % world.size != world.rank:
            continue
        end = min(start + bptt, rows - 1)
        x, y = data[:, start:end], data[:, start + 1 : end + 1]  # (B, T)
        logits = model(x)  # (B, T, V)
        nll += F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum").item()
        count += y.numel()
    bar.close()
    model.train(was_training)
    nll, count = all_reduce_sum([nll, float(count)], world)
    return LMScore(nll=nll, tokens=int(count))
