"""Hypothesis strategies for the fuzz tests: recipes, --set pairs, corpora, byte mutations."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from hypothesis import strategies as st

from prunekit.config import DataConfig, PruneSection, TrainConfig
from prunekit.models.rnn_lm import RNNLMConfig
from prunekit.models.transformer_lm import TransformerLMConfig

WORDS = [
    "transformer", "rnn", "lstm", "gru", "word", "sentencepiece", "unigram", "bpe", "taylor",
    "magnitude", "activation", "unstructured", "structured", "factorized", "one-shot",
    "incremental", "layer", "global", "cosine", "linear", "constant", "shakespeare", "gelu",
]  # fmt: skip
SECTION_KEYS = {
    "data": sorted(DataConfig.model_fields),
    "train": sorted(TrainConfig.model_fields),
    "model": sorted(
        {"arch"}
        | {f.name for c in (TransformerLMConfig, RNNLMConfig) for f in dataclasses.fields(c)}
    ),
    "prune": sorted(PruneSection.model_fields),
}
JUNK_KEYS = ["bogus", "", "steps ", "Train", "0"]

# Small numbers only: a recipe may ask for any model size, and a huge one is a resource limit,
# not a parsing bug (a 10^9-wide layer would only exercise the allocator).
scalars = st.one_of(
    st.integers(-3, 48),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(WORDS),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=5,
)


# Values a user might well write: most fuzzed recipes should still run.
plausible = st.one_of(
    st.integers(1, 12),
    st.floats(0.0, 0.6),
    st.sampled_from([0, 0.001, 0.01, 1e-4, 0.5, 0.9, True, False, 16, 32, 2000]),
    st.sampled_from(WORDS),
)


_MODELS = {"data": DataConfig, "train": TrainConfig, "prune": PruneSection}
_MODEL_TYPES = {
    f.name: f.type for c in (TransformerLMConfig, RNNLMConfig) for f in dataclasses.fields(c)
}


def typed_value(section: str, key: str) -> st.SearchStrategy:
    """A value of the type the key takes (a Literal's choices, a small number, a flag), so that
    a recipe with it mostly still runs."""
    if section in _MODELS and key in _MODELS[section].model_fields:
        annotation = _MODELS[section].model_fields[key].annotation
        if typing.get_origin(annotation) is typing.Literal:
            return st.sampled_from(typing.get_args(annotation))
        name = getattr(annotation, "__name__", str(annotation))
    else:
        name = str(_MODEL_TYPES.get(key, "str"))
    if key == "arch":
        return st.sampled_from(["transformer", "rnn"])
    if name.startswith("bool"):
        return st.booleans()
    if name.startswith("int"):
        return st.integers(1, 12)
    if name.startswith("float"):
        return st.floats(0.0, 0.6)
    if name.startswith("list"):
        return st.lists(st.floats(0.05, 0.9), min_size=1, max_size=3)
    if name.startswith("dict"):
        return st.just({})
    return st.sampled_from(WORDS)


@st.composite
def recipe_edits(draw: st.DrawFn, junk: float = 0.5) -> list[tuple[str, Any]]:
    """A few (dotted key, value) edits to apply to a valid recipe: real keys mostly, some junk;
    values plausible, or (with probability `junk`) anything."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        anything = draw(st.floats(0, 1)) < junk
        section = draw(st.sampled_from([*SECTION_KEYS, "junk"] if anything else [*SECTION_KEYS]))
        if section == "junk":
            edits.append((draw(st.sampled_from(JUNK_KEYS)), draw(values)))
            continue
        key = draw(st.sampled_from(SECTION_KEYS[section] + JUNK_KEYS[:anything]))
        dotted = f"prune.0.{key}" if section == "prune" else f"{section}.{key}"
        edits.append((dotted, draw(values if anything else typed_value(section, key))))
    return edits


set_pairs = st.one_of(
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(
            [f"{s}.{k}" for s, keys in SECTION_KEYS.items() if s != "prune" for k in keys]
        ),
        st.one_of(st.text(max_size=10), st.integers(-3, 48).map(str), st.sampled_from(WORDS)),
    ),
    st.text(max_size=20),  # anything at all, '=' or not
)

_word = st.one_of(
    st.sampled_from(["the", "king", "of", "a", "é", "naïve", "€", "x" * 30, "'", "—", "\t"]),
    st.text(min_size=1, max_size=6),
)
_lines = st.lists(st.lists(_word, min_size=1, max_size=10).map(" ".join), min_size=1, max_size=60)
_lines = _lines.map("\n".join)
corpus_text = st.one_of(
    _lines,
    _lines,
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(list("ab c\n\r\t\x00é€")), max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)
corpus_bytes = st.one_of(
    _lines.map(str.encode),
    _lines.map(str.encode),
    corpus_text.map(str.encode),
    st.binary(max_size=300),
)


@st.composite
def byte_mutation(draw: st.DrawFn, size: int, json_file: bool = False) -> tuple[str, Any]:
    """One way to damage a file of `size` bytes: flip, truncate, append, replace, delete; for a
    JSON file also an edit that keeps it valid JSON (one value anywhere in it replaced)."""
    kinds = ["flip", "truncate", "append", "replace", "delete"] + ["json-edit"] * 3 * json_file
    kind = draw(st.sampled_from(kinds))
    if kind == "json-edit":
        return kind, (draw(st.integers(0, 10**6)), draw(values))
    if kind == "flip":
        offsets = draw(st.lists(st.integers(0, max(0, size - 1)), min_size=1, max_size=8))
        return kind, (offsets, draw(st.integers(1, 255)))
    if kind == "truncate":
        return kind, draw(st.integers(0, max(0, size - 1)))
    if kind in ("append", "replace"):
        return kind, draw(st.binary(min_size=1, max_size=64))
    return kind, None


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value in a JSON document (containers included)."""
    out = [path]
    if isinstance(node, dict):
        for key in sorted(node, key=str):
            out += _leaves(node[key], (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out += _leaves(item, (*path, i))
    return out


def _json_edit(data: bytes, index: int, value: Any) -> bytes:
    doc = json.loads(data)
    paths = _leaves(doc)[1:] or [()]
    path = paths[index % len(paths)]
    if not path:
        return json.dumps(value).encode()
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return json.dumps(doc).encode()


def mutate(data: bytes, mutation: tuple[str, Any]) -> bytes | None:
    """Apply a `byte_mutation` (None: delete the file)."""
    kind, arg = mutation
    if kind == "json-edit":
        return _json_edit(data, *arg)
    if kind == "flip":
        out = bytearray(data)
        for i in arg[0]:
            if i < len(out):
                out[i] ^= arg[1]
        return bytes(out)
    if kind == "truncate":
        return data[:arg]
    if kind == "append":
        return data + arg
    if kind == "replace":
        return arg
    return None
