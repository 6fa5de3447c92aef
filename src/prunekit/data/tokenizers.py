"""Tokenizers: SentencePiece (unigram or BPE, cached by content hash) and a word-level vocabulary.

Both turn a corpus into one 1-D stream of token ids with an end-of-sentence id after each
non-empty line, and both count words the same way, so per-word perplexities compare across them.

The `<eos>` convention (as in Mikolov's PTB setup and the WikiText benchmarks): every non-empty
line ends with one `<eos>` token, which the model predicts and which perplexity counts, as a token
and as a word. Empty lines get none (PyTorch's word_language_model example adds an `<eos>` to
every line, empty ones included, so on WikiText its token count is higher and its perplexity a
little lower than here). The word vocabulary keeps every word of the train split by default; a
cap (`data.vocab_size`) maps the rarer words to `<unk>`, and every report then states the share
of `<unk>` tokens (the OOV rate), without which a word-level perplexity cannot be compared.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import sentencepiece as spm
import torch

from prunekit.atomic import write_with
from prunekit.errors import PrunekitError
from prunekit.progress import note

logger = logging.getLogger(__name__)

KINDS = ("sentencepiece", "word")
SPM_MODEL_TYPES = ("unigram", "bpe")
SPM_FORMAT_VERSION = "prunekit-spm-1"
"""Part of the cache key: bump it whenever `_spm_config` changes what training produces."""

UNK, EOS = "<unk>", "<eos>"


class Tokenizer(Protocol):
    """What the trainer and the evaluator need from a tokenizer."""

    @property
    def kind(self) -> str:
        """ "sentencepiece" or "word"."""
        ...

    @property
    def vocab_size(self) -> int:
        """Number of token ids: every id is in [0, vocab_size)."""
        ...

    @property
    def eos_id(self) -> int:
        """Id appended after each line by `encode_corpus`."""
        ...

    @property
    def unk_id(self) -> int:
        """Id of the unknown token (out-of-vocabulary words or characters)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Encode text to ids (no end-of-sentence ids added)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text; each `eos_id` becomes a newline."""
        ...

    def encode_corpus(self, text: str) -> torch.Tensor:
        """Encode every non-empty line, each followed by `eos_id`: 1-D int64 tensor."""
        ...

    def count_words(self, text: str) -> int:
        """Count whitespace-separated words plus one end-of-sentence per non-empty line."""
        ...

    def save(self, path: Path) -> None:
        """Write the tokenizer to `path` (read it back with `load_tokenizer`)."""
        ...

    def to_bytes(self) -> bytes:
        """The bytes `save` writes (read them back with `tokenizer_from_bytes`)."""
        ...


def count_words(text: str) -> int:
    """Count the words of `text` for per-word perplexity: ppl = exp(total_nll / count_words).

    Returns:
        Whitespace-separated words plus one end-of-sentence per non-empty line.
    """
    return sum(len(line.split()) + 1 for line in text.splitlines() if line.strip())


def nonempty_lines(text: str) -> list[str]:
    """Return the lines of `text` that are not empty or whitespace-only."""
    return [line for line in text.splitlines() if line.strip()]


def _stream(encoded: Iterable[Sequence[int]], eos_id: int) -> torch.Tensor:
    ids: list[int] = []
    for line_ids in encoded:
        ids.extend(line_ids)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.int64)


def _decode_lines(ids: Sequence[int], eos_id: int, decode: Callable[[list[int]], str]) -> str:
    lines: list[list[int]] = [[]]
    for i in ids:
        if int(i) == eos_id:
            lines.append([])
        else:
            lines[-1].append(int(i))
    return "\n".join(decode(line) for line in lines)


def default_cache_dir() -> Path:
    """Return where trained SentencePiece models are cached: `$PRUNEKIT_CACHE/spm`.

    `PRUNEKIT_CACHE` defaults to `~/.cache/prunekit`.
    """
    root = os.environ.get("PRUNEKIT_CACHE") or "~/.cache/prunekit"
    return Path(root).expanduser() / "spm"


def _spm_config(vocab_size: int, model_type: str) -> dict[str, object]:
    """The fixed, deterministic SentencePiece trainer options."""
    return {
        "vocab_size": vocab_size,
        "model_type": model_type,
        "character_coverage": 1.0,
        "byte_fallback": False,
        "hard_vocab_limit": True,
        "unk_id": 0,
        "eos_id": 1,
        "bos_id": -1,
        "pad_id": -1,
        "num_threads": 1,
        "shuffle_input_sentence": False,
        "input_sentence_size": 0,
        "max_sentence_length": 1 << 16,
        "minloglevel": 2,
    }


def _spm_cache_key(text: str, config: dict[str, object]) -> str:
    digest = hashlib.sha256(SPM_FORMAT_VERSION.encode())
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(b"\0")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def _spm_error(err: RuntimeError, vocab_size: int) -> PrunekitError | None:
    """Translate SentencePiece's complaints about the vocabulary size; None for other errors."""
    msg = str(err)
    if "Vocabulary size too high" in msg:
        found = re.search(r"<=\s*(\d+)", msg)
        limit = f" (max {found.group(1)})" if found else ""
        return PrunekitError(
            f"vocab_size={vocab_size} is larger than this corpus supports{limit}: "
            "lower data.vocab_size"
        )
    if "smaller than required_chars" in msg:
        found = re.search(r"(\d+)\s+vs\s+(\d+)", msg)
        need = f" (min {found.group(2)})" if found else ""
        return PrunekitError(
            f"vocab_size={vocab_size} is smaller than the number of distinct characters in this "
            f"corpus{need}: raise data.vocab_size"
        )
    if "all_chars_count" in msg:
        return PrunekitError(
            "the train split has no characters a sentencepiece tokenizer can learn (only "
            "spaces or control characters): put text in it"
        )
    return None


class SentencePieceTokenizer:
    """A SentencePiece model (unigram or BPE) with `<unk>`=0 and `<eos>`=1, no BOS or padding."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        """Wrap a serialized SentencePiece model.

        Raises:
            PrunekitError: if the bytes are not a SentencePiece model with an end-of-sentence id.
        """
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, TypeError, OSError):
            raise PrunekitError(
                "not a valid sentencepiece model: retrain the tokenizer or pass the .model file "
                "saved with the run"
            ) from None
        if self._sp.eos_id() < 0:
            raise PrunekitError(
                "sentencepiece model has no end-of-sentence piece: retrain it with prunekit"
            )
        self._proto = bytes(model_proto)

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        model_type: str = "unigram",
        cache_dir: Path | None = None,
    ) -> SentencePieceTokenizer:
        """Train on `text` (the train split only), or load the cached model for the same inputs.

        Args:
            text: training text, one sentence per line; empty lines are skipped.
            vocab_size: number of pieces, including `<unk>` and `<eos>`.
            model_type: "unigram" or "bpe".
            cache_dir: where `<sha256>.model` files live; defaults to `default_cache_dir()`.

        Returns:
            The tokenizer; the same inputs always give the same model.

        Raises:
            PrunekitError: for an unknown model_type, empty text, or a vocab_size the corpus
                cannot support.
        """
        if model_type not in SPM_MODEL_TYPES:
            raise PrunekitError(
                f"data.spm_model_type={model_type!r} is unknown: use one of {SPM_MODEL_TYPES}"
            )
        if vocab_size < 3:
            raise PrunekitError(f"vocab_size={vocab_size} is too small: use at least 3")
        lines = nonempty_lines(text)
        if not lines:
            raise PrunekitError("tokenizer training text is empty: check the corpus train split")
        config = _spm_config(vocab_size, model_type)
        path = (cache_dir or default_cache_dir()) / f"{_spm_cache_key(text, config)}.model"
        if path.is_file():
            try:
                tokenizer = cls(path.read_bytes())
                logger.info("loaded cached sentencepiece model %s", path)
                return tokenizer
            except PrunekitError:
                logger.warning("cached sentencepiece model %s is unreadable; retraining", path)
        logger.info("training %s sentencepiece model, vocab %d", model_type, vocab_size)
        note(f"data: training a {model_type} sentencepiece tokenizer ({vocab_size} units)")
        buffer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=buffer, **config
            )
        except RuntimeError as err:
            raise (_spm_error(err, vocab_size) or err) from None
        tokenizer = cls(buffer.getvalue())
        try:
            tokenizer.save(path)
        except OSError as err:
            logger.warning("could not cache sentencepiece model at %s: %s", path, err)
        return tokenizer

    @property
    def vocab_size(self) -> int:
        """Number of pieces."""
        return int(self._sp.get_piece_size())

    @property
    def eos_id(self) -> int:
        """Id of `<eos>`."""
        return int(self._sp.eos_id())

    @property
    def unk_id(self) -> int:
        """Id of `<unk>` (characters the training text did not have)."""
        return int(self._sp.unk_id())

    def encode(self, text: str) -> list[int]:
        """Encode text to piece ids (newlines count as spaces; no `<eos>` added)."""
        return list(self._sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Decode piece ids to text; each `<eos>` becomes a newline."""
        return _decode_lines(ids, self.eos_id, self._sp.decode)

    def encode_corpus(self, text: str) -> torch.Tensor:
        """Encode every non-empty line followed by `<eos>`.

        Returns:
            1-D int64 tensor (num_tokens,).
        """
        return _stream(self._sp.encode(nonempty_lines(text)), self.eos_id)

    def count_words(self, text: str) -> int:
        """Count words plus one end-of-sentence per non-empty line (see `count_words`)."""
        return count_words(text)

    def save(self, path: Path) -> None:
        """Atomically write the serialized model proto to `path`."""
        write_with(path, lambda tmp: tmp.write_bytes(self._proto))

    def to_bytes(self) -> bytes:
        """The serialized model proto."""
        return self._proto


class WordTokenizer:
    """A word vocabulary from whitespace-split text: `<unk>`=0, `<eos>`=1, then by frequency."""

    kind = "word"
    unk_id = 0

    def __init__(self, itos: Sequence[str]) -> None:
        """Wrap a vocabulary list (id -> word).

        Raises:
            PrunekitError: if it does not start with `<unk>`, `<eos>` or has duplicate words.
        """
        self.itos = list(itos)
        if self.itos[:2] != [UNK, EOS] or len(set(self.itos)) != len(self.itos):
            raise PrunekitError(
                f"word vocabulary must start with {UNK}, {EOS} and have no duplicates: "
                "rebuild the tokenizer with prunekit"
            )
        self.stoi = {word: i for i, word in enumerate(self.itos)}

    @classmethod
    def build(cls, text: str, max_vocab: int | None = None, min_freq: int = 1) -> WordTokenizer:
        """Build the vocabulary of `text` (the train split only).

        Words are sorted by frequency (most frequent first), ties lexicographically. A literal
        `<unk>` in the text (as in PTB) is the unknown word itself.

        Args:
            text: training text.
            max_vocab: most ids in all, `<unk>` and `<eos>` included; None for no limit.
            min_freq: words seen fewer times become `<unk>`.

        Returns:
            The tokenizer.

        Raises:
            PrunekitError: if max_vocab < 3 or min_freq < 1.
        """
        if max_vocab is not None and max_vocab < 3:
            raise PrunekitError(
                f"vocab_size={max_vocab} is too small for a word vocabulary: use at least 3, "
                "or 0 for no limit"
            )
        if min_freq < 1:
            raise PrunekitError(f"min_freq={min_freq} must be >= 1")
        counts = Counter(text.split())
        counts.pop(UNK, None)
        counts.pop(EOS, None)
        words = sorted(
            (w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w)
        )
        if max_vocab is not None:
            words = words[: max_vocab - 2]
        return cls([UNK, EOS, *words])

    @property
    def vocab_size(self) -> int:
        """Number of words, `<unk>` and `<eos>` included."""
        return len(self.itos)

    @property
    def eos_id(self) -> int:
        """Id of `<eos>`."""
        return 1

    def encode(self, text: str) -> list[int]:
        """Encode whitespace-separated words; unknown words become `<unk>`."""
        stoi = self.stoi
        return [stoi.get(word, 0) for word in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        """Join words with spaces; each `<eos>` becomes a newline."""
        return _decode_lines(ids, self.eos_id, lambda line: " ".join(self.itos[i] for i in line))

    def encode_corpus(self, text: str) -> torch.Tensor:
        """Encode every non-empty line followed by `<eos>`.

        Returns:
            1-D int64 tensor (num_tokens,).
        """
        return _stream((self.encode(line) for line in nonempty_lines(text)), self.eos_id)

    def count_words(self, text: str) -> int:
        """Count words plus one end-of-sentence per non-empty line (see `count_words`)."""
        return count_words(text)

    def save(self, path: Path) -> None:
        """Atomically write `{"kind": "word", "itos": [...]}` as JSON to `path`."""
        write_with(path, lambda tmp: tmp.write_bytes(self.to_bytes()))

    def to_bytes(self) -> bytes:
        """`{"kind": "word", "itos": [...]}` as UTF-8 JSON."""
        return (json.dumps({"kind": self.kind, "itos": self.itos}, indent=2) + "\n").encode()


SPM_DEFAULT_VOCAB = 2000
"""SentencePiece vocabulary size when the recipe gives none."""


def build_tokenizer(
    kind: str,
    train_text: str,
    vocab_size: int | None = None,
    cache_dir: Path | None = None,
    model_type: str = "unigram",
) -> Tokenizer:
    """Build a tokenizer of the given kind from the train split.

    Args:
        kind: "sentencepiece" or "word".
        train_text: the corpus train split.
        vocab_size: SentencePiece vocabulary size (None: `SPM_DEFAULT_VOCAB`), or the word
            vocabulary cap (None or 0: every word of the train split).
        cache_dir: SentencePiece model cache (see `SentencePieceTokenizer.train`).
        model_type: SentencePiece "unigram" or "bpe"; ignored for words.

    Returns:
        The tokenizer.

    Raises:
        PrunekitError: for an unknown kind or a bad vocab_size/model_type.
    """
    if kind == "sentencepiece":
        size = SPM_DEFAULT_VOCAB if vocab_size is None else vocab_size
        return SentencePieceTokenizer.train(train_text, size, model_type, cache_dir)
    if kind == "word":
        vocab_size = vocab_size or 0
        if vocab_size < 0:
            raise PrunekitError(f"vocab_size={vocab_size} must be >= 0 (0 = no limit)")
        return WordTokenizer.build(train_text, max_vocab=vocab_size or None)
    raise PrunekitError(f"tokenizer.kind={kind!r} is unknown: use one of {KINDS}")


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a tokenizer written by `save`, detecting its kind.

    Raises:
        PrunekitError: if the file is missing or is neither kind of tokenizer.
    """
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(
            f"tokenizer file {path} does not exist: pass the tokenizer saved with the model"
        )
    return tokenizer_from_bytes(path.read_bytes(), str(path))


def tokenizer_from_bytes(data: bytes, source: str = "tokenizer") -> Tokenizer:
    """Rebuild a tokenizer from the bytes `to_bytes` / `save` wrote, detecting its kind.

    Args:
        data: a word vocabulary (JSON) or a serialized SentencePiece model.
        source: what to call the bytes in error messages (e.g. their file).

    Raises:
        PrunekitError: bytes that are neither kind of tokenizer.
    """
    if data.lstrip().startswith(b"{"):
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            obj = None
        if (
            isinstance(obj, dict)
            and obj.get("kind") == "word"
            and isinstance(obj.get("itos"), list)
        ):
            return WordTokenizer(obj["itos"])
        raise PrunekitError(
            f"{source} is JSON but not a word tokenizer (needs 'kind': 'word' and 'itos'): "
            "pass the tokenizer saved with the model"
        )
    try:
        return SentencePieceTokenizer(data)
    except PrunekitError:
        raise PrunekitError(
            f"{source} is neither a word tokenizer (JSON) nor a sentencepiece model: "
            "pass the tokenizer saved with the model"
        ) from None
