"""A `prunekit asr` recipe small enough for tests: 4 / 2 / 4 synthesized utterances, tiny models."""

from pathlib import Path

import yaml

TINY_LM = {
    "model": {"arch": "transformer", "d_model": 32, "n_layer": 2, "n_head": 2, "d_ff": 64,
              "dropout": 0.1, "max_rel_pos": 8},
    "train": {"steps": 6, "batch_size": 2, "bptt": 8, "warmup_steps": 2, "eval_every": 3,
              "eval_batch_size": 2, "log_every": 1, "threads": 1},
}  # fmt: skip


def speech_section(corpus: Path) -> dict:
    """The audio tests' tiny corpus (4 train, 2 dev, 4 test utterances; fast engines only)."""
    return {"corpus": str(corpus), "train_utterances": 4, "dev_utterances": 2,
            "test_utterances": 4, "max_words": 12, "engines": {"espeak-ng": 1.0, "flite": 1.0},
            "workers": 1, "n_mels": 40}  # fmt: skip


def write_recipe(tmp: Path, corpus: Path) -> Path:
    lm = {"name": "tiny-lm", "data": {"corpus": str(corpus), "tokenizer": "word"}, **TINY_LM}
    (tmp / "lm.yaml").write_text(yaml.safe_dump(lm))
    asr = {
        "name": "tiny-asr",
        "speech": speech_section(corpus),
        "am": {"model": {"arch": "ctc", "conv_channels": 4, "d_input": 32, "d_hidden": 32,
                         "n_layer": 1, "dropout": 0.0},
               "train": {"steps": 12, "lr": 0.01, "warmup_steps": 2, "eval_every": 6,
                         "threads": 1},
               "max_frames": 8000, "min_batch": 1},
        "lm": {"recipe": str(tmp / "lm.yaml")},
        "source_lm": {"recipe": str(tmp / "lm.yaml")},
        "decode": {"beam_width": 4, "lm_weight": [0.3, 0.8], "ilm_weight": [0.0, 0.2],
                   "word_bonus": [0.0, 1.0]},
    }  # fmt: skip
    (tmp / "asr.yaml").write_text(yaml.safe_dump(asr))
    return tmp / "asr.yaml"
