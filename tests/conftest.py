import os
import tempfile
from pathlib import Path

import pytest
import torch

# One thread per test process: `make test` runs two processes (pytest -n 2) on a 2-core machine.
torch.set_num_threads(1)
# Tokenizer caches of the test run stay out of the user's home.
os.environ.setdefault("PRUNEKIT_CACHE", tempfile.mkdtemp(prefix="prunekit-test-cache-"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A small real-text corpus folder (train/valid/test.txt) cut from the default corpus."""
    from prunekit.data import load_shakespeare

    corpus = load_shakespeare()
    folder = tmp_path_factory.mktemp("tiny_corpus")
    for split, lines in (("train", 1500), ("valid", 200), ("test", 200)):
        text = "\n".join(getattr(corpus, split).splitlines()[:lines]) + "\n"
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_recipe():
    """A function: corpus folder, **train overrides -> recipe dict for a seconds-long run."""
    return _tiny_recipe


def _tiny_recipe(corpus: Path, **train) -> dict:
    """A recipe dict for a seconds-long run on `corpus`."""
    return {
        "name": "tiny",
        "data": {"corpus": str(corpus), "tokenizer": "word", "vocab_size": 500},
        "model": {
            "arch": "transformer",
            "d_model": 32,
            "n_layer": 2,
            "n_head": 2,
            "d_ff": 64,
            "dropout": 0.1,
            "max_rel_pos": 8,
        },
        "train": {
            "steps": 6,
            "batch_size": 4,
            "bptt": 16,
            "warmup_steps": 2,
            "eval_every": 3,
            "eval_batch_size": 4,
            "log_every": 1,
            "threads": 1,
            **train,
        },
    }
