"""Data layer: corpora, tokenizers and language-model batches."""

from prunekit.data.batching import LMBatches
from prunekit.data.corpus import Corpus, load_corpus
from prunekit.data.shakespeare import load_shakespeare
from prunekit.data.tokenizers import (
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
    tokenizer_from_bytes,
)

__all__ = [
    "Corpus",
    "LMBatches",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "build_tokenizer",
    "load_corpus",
    "load_shakespeare",
    "load_tokenizer",
    "tokenizer_from_bytes",
]
