"""One small interface every LM goes through when a decoder fuses it, and the word-level view.

`LMScorer` (token level): `start()` gives the state after the sentence start (the LM's `<eos>`,
which separates sentences in its training stream); `advance(states, tokens)` feeds each token
sequence after its state in ONE batched call and returns the summed log-probability of each
sequence and the new states. A state carries the next-token log-probabilities, so scoring a token
never needs a second call. Adapters:

- `RNNScorer`: `RNNLM` and its compact / int8 forms (`CompactRNNLM`): hidden states stacked.
- `TransformerScorer` (`prunekit.asr.transformer_scorer`): `TransformerLM` dense, masked
  (parametrized weights work as they are) or compact, and `FastTransformerDecoder` (the runtime's
  kernels): histories of different lengths in one call, left-padded and masked.
- `lm_scorer(model)` picks the adapter.

Scores equal the model's own full-sequence log-probabilities to float rounding, except with
dynamic int8 layers, which quantize activations per call: there the batch a sequence is scored in
shifts its score slightly (about 1e-3 nats in the tests).

`WordLM(lm, tokenizer)` (word level): log p(word | previous words) is the sum over the word's pieces
in the LM's own tokenizer, plus log p(<eos> | words) at the end. States live in a trie of word
histories (`ROOT` = no words yet), so each (history, word) is computed once per utterance, and
`score_words` scores every new (history, word) pair of a decoding step in one `advance` call.

Words the tokenizer maps to `<unk>` (a word LM's out-of-vocabulary words; a piece the
sentencepiece model lacks): the LM's `<unk>` log-probability stands for every unknown word at
once, so each `<unk>` token of a word also gets `unk_offset` (default -10 nats, as pyctcdecode's
`unk_score_offset`). An unknown word is then possible but never cheaper than a known one the LM
rates similarly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError

UNK_ID = 0  # prunekit's tokenizers (word and sentencepiece) put <unk> at id 0
ROOT = 0  # WordLM node of the empty word history


@dataclass(frozen=True)
class LMState:
    """What an LM knows after a history: next-token log-probs (V,) and the adapter's cache."""

    log_probs: Tensor  # (V,) log p(next token | history)
    cache: Any
    length: int  # tokens consumed


@runtime_checkable
class LMScorer(Protocol):
    """A token-level LM for decoding (see the module docstring)."""

    vocab_size: int
    eos_id: int

    def start(self) -> LMState:
        """The state after the sentence start (`<eos>` fed)."""
        ...

    def advance(
        self, states: Sequence[LMState], tokens: Sequence[Sequence[int]]
    ) -> tuple[Tensor, list[LMState]]:
        """Feed tokens[i] (non-empty) after states[i], all in one batched call.

        Returns:
            (scores (B,) = sum of log p(tokens[i] | states[i]), the B new states).
        """
        ...


def check_eval(model: nn.Module) -> None:
    """Raise PrunekitError if `model` is in training mode (dropout would make scores random)."""
    if model.training:
        raise PrunekitError("the LM is in training mode: call model.eval() before decoding with it")


def gather_scores(
    prev: Tensor, out_logp: Tensor, tokens: Tensor, lengths: Tensor
) -> tuple[Tensor, Tensor]:
    """Sum the log-probs of right-padded `tokens` and pick each row's next-token distribution.

    Args:
        prev: (B, V) log-probs of the first token (the input states').
        out_logp: (B, L, V) log-probs after each fed token.
        tokens: (B, L) ids, right-padded.
        lengths: (B,) number of real tokens per row (>= 1).

    Returns:
        (scores (B,), next log-probs (B, V) after each row's last real token).
    """
    B, L = tokens.shape
    before = torch.cat([prev.unsqueeze(1), out_logp[:, :-1]], dim=1)  # (B, L, V)
    token_logp = before.gather(2, tokens.unsqueeze(2)).squeeze(2)  # (B, L)
    real = torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1)  # (B, L)
    scores = token_logp.masked_fill(~real, 0.0).sum(1)
    last = out_logp[torch.arange(B), lengths - 1]  # (B, V)
    return scores, last


def padded(tokens: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad token lists with id 0: ((B, L) int64, lengths (B,))."""
    lens = [len(t) for t in tokens]
    if min(lens) < 1:
        raise PrunekitError("advance got an empty token sequence: feed at least one token")
    L = max(lens)
    rows = [list(t) + [0] * (L - n) for t, n in zip(tokens, lens, strict=True)]
    return torch.tensor(rows, dtype=torch.long), torch.tensor(lens, dtype=torch.long)


class StartCache:
    """`start()` for a token scorer: its `_empty()` state fed the `<eos>` once, then cached."""

    eos_id: int
    _start: LMState | None = None

    def _empty(self) -> LMState:
        raise NotImplementedError

    def advance(
        self, states: Sequence[LMState], tokens: Sequence[Sequence[int]]
    ) -> tuple[Tensor, list[LMState]]:
        raise NotImplementedError

    def start(self) -> LMState:
        if self._start is None:
            self._start = self.advance([self._empty()], [[self.eos_id]])[1][0]
        return self._start


class RNNScorer(StartCache):
    """`LMScorer` over an `RNNLM` (LSTM or GRU; dense, masked, compact or int8).

    The cache of a state is the per-sequence hidden state, (n_layer, H) tensors. One call per
    distinct token count in the batch: (B_L, L) tokens through `decode_step` from stacked states
    (a word LM always has L = 1, so one call).
    """

    def __init__(self, model: nn.Module, *, eos_id: int = 1):
        """Args: model, in eval mode; eos_id, the sentence separator of its tokenizer."""
        check_eval(model)
        self.model = model
        self.vocab_size = int(model.config.vocab_size)
        self.eos_id = int(eos_id)

    def _empty(self) -> LMState:
        state = self.model.init_state(1)
        cache = tuple(s[:, 0] for s in state) if isinstance(state, tuple) else state[:, 0]
        return LMState(torch.zeros(self.vocab_size), cache, 0)

    @torch.inference_mode()
    def advance(
        self, states: Sequence[LMState], tokens: Sequence[Sequence[int]]
    ) -> tuple[Tensor, list[LMState]]:
        ids, lengths = padded(tokens)
        scores = torch.zeros(len(states))
        out: list[LMState | None] = [None] * len(states)
        for L in sorted(set(lengths.tolist())):
            rows = [i for i, n in enumerate(lengths.tolist()) if n == L]
            caches = [states[i].cache for i in rows]
            if isinstance(caches[0], tuple):
                hidden: Any = tuple(
                    torch.stack(parts, dim=1) for parts in zip(*caches, strict=True)
                )
            else:
                hidden = torch.stack(caches, dim=1)  # (n_layer, B_L, H)
            logits, new = self.model.decode_step(ids[rows, :L], hidden)  # (B_L, L, V)
            prev = torch.stack([states[i].log_probs for i in rows])  # (B_L, V)
            s, last = gather_scores(
                prev, torch.log_softmax(logits.float(), -1), ids[rows, :L], lengths[rows]
            )
            scores[rows] = s
            for j, i in enumerate(rows):
                cache = tuple(h[:, j] for h in new) if isinstance(new, tuple) else new[:, j]
                out[i] = LMState(last[j], cache, states[i].length + L)
        return scores, out  # type: ignore[return-value]


def lm_scorer(model: nn.Module | LMScorer, *, eos_id: int = 1) -> LMScorer:
    """The `LMScorer` adapter for `model` (an LMScorer is returned as it is).

    Covers `TransformerLM` (dense, masked, compact), `FastTransformerDecoder` (pass
    `prunekit.runtime.fast_decoder(model)` to decode through the runtime's kernels) and `RNNLM`
    (dense, masked, compact, int8). `eos_id`: the sentence separator of the LM's tokenizer.

    Raises:
        PrunekitError: another kind of model, or a model in training mode.
    """
    from prunekit.asr.transformer_scorer import TransformerScorer
    from prunekit.models.rnn_lm import RNNLM
    from prunekit.models.transformer_lm import TransformerLM
    from prunekit.runtime import FastTransformerDecoder

    if isinstance(model, TransformerLM | FastTransformerDecoder):
        return TransformerScorer(model, eos_id=eos_id)
    if isinstance(model, RNNLM):
        return RNNScorer(model, eos_id=eos_id)
    if isinstance(model, LMScorer):
        return model
    raise PrunekitError(
        f"cannot decode with a {type(model).__name__}: pass a prunekit TransformerLM, RNNLM "
        "or fast_decoder(model)"
    )


class WordLM:
    """log p(word | previous words) from a token LM and its tokenizer, cached per utterance.

    Nodes are ints: `ROOT` is the empty history; `score_words` returns each word's child node.
    Call `reset()` between utterances to free the states (the start state is kept).
    `seconds` / `calls` / `tokens` count the time, batched calls and tokens spent in the LM.
    """

    def __init__(self, lm: nn.Module | LMScorer, tokenizer: Any, *, unk_offset: float = -10.0):
        """Args: lm, a model `lm_scorer` accepts or an LMScorer; tokenizer, the LM's own
        (`prunekit.data.tokenizers`); unk_offset, added per `<unk>` token (see module docstring).

        Raises:
            PrunekitError: the tokenizer's vocabulary size differs from the LM's.
        """
        self.scorer = lm_scorer(lm, eos_id=int(tokenizer.eos_id))
        if int(tokenizer.vocab_size) != int(self.scorer.vocab_size):
            raise PrunekitError(
                f"the tokenizer has {tokenizer.vocab_size} ids but the LM has "
                f"{self.scorer.vocab_size}: pass the tokenizer the LM was trained with"
            )
        self.tokenizer = tokenizer
        self.eos_id = int(tokenizer.eos_id)
        self.unk_offset = float(unk_offset)
        self._pieces: dict[str, tuple[list[int], int]] = {}
        self.seconds = 0.0
        self.calls = 0
        self.tokens = 0
        self._start: LMState | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every history but the empty one."""
        self._states: list[LMState | None] = [self._start]
        self._children: dict[tuple[int, str], tuple[int, float]] = {}

    def pieces(self, word: str) -> tuple[list[int], int]:
        """The word's token ids and how many of them are `<unk>`."""
        hit = self._pieces.get(word)
        if hit is None:
            ids = list(self.tokenizer.encode(word))
            if not ids:
                raise PrunekitError(f"the LM's tokenizer encodes the word {word!r} to no tokens")
            hit = self._pieces[word] = (ids, sum(1 for i in ids if i == UNK_ID))
        return hit

    def _state(self, node: int) -> LMState:
        state = self._states[node]
        if state is None:  # the start state, computed on first use
            t0 = time.perf_counter()
            state = self._start = self.scorer.start()
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            self._states[node] = state
        return state

    def score_words(self, requests: Sequence[tuple[int, str]]) -> list[tuple[int, float]]:
        """For each (node, word): (child node, log p(word | node's history)), in nats.

        Every pair not seen before in this utterance goes into one batched LM call.
        """
        children = self._children
        new = list(dict.fromkeys(r for r in requests if r not in children))
        if new:
            states = [self._state(node) for node, _ in new]
            pieces = [self.pieces(word) for _, word in new]
            t0 = time.perf_counter()
            scores, after = self.scorer.advance(states, [ids for ids, _ in pieces])
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            self.tokens += sum(len(ids) for ids, _ in pieces)
            for key, score, state, (_, n_unk) in zip(
                new, scores.tolist(), after, pieces, strict=True
            ):
                children[key] = (len(self._states), score + n_unk * self.unk_offset)
                self._states.append(state)
        return [children[r] for r in requests]

    def end_score(self, node: int) -> float:
        """log p(<eos> | node's history)."""
        return float(self._state(node).log_probs[self.eos_id])
