"""The same command twice gives bit-identical checkpoints (dropout on), and a run interrupted and
resumed gives bit-identical checkpoints and metrics to one that never stopped."""

import json

import numpy as np
import pytest
import torch
from reliability_helpers import prune_section, run_differences, tiny_recipe_file

from prunekit.cli.main import main
from prunekit.train.trainer import Trainer


class Killed(BaseException):
    """Stands in for SIGKILL inside the test process (not an Exception: nothing catches it)."""


def _kill_at(monkeypatch, step: int) -> None:
    """Make the next Trainer run die just before its optimizer step `step` (1-based)."""
    real = Trainer.train_step

    def dying(self):
        if self.step + 1 == step:
            monkeypatch.setattr(Trainer, "train_step", real)
            raise Killed
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", dying)


def _scramble_rng(seed: int) -> None:
    """What a fresh process (or earlier work in this one) leaves in the global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def _prune_argv(tiny_baseline, tmp_path, out, **train):
    recipe, best = tiny_baseline
    body = {"prune": [prune_section()], "train": {**recipe["train"], **train}}
    path = tiny_recipe_file(tmp_path, body, "prune.yaml")
    return ["prune", str(best), "--recipe", str(path), "--out", str(out)]


def test_prune_twice_gives_bit_identical_checkpoints(tiny_baseline, tmp_path, capsys):
    for i, seed in enumerate((1, 2)):
        _scramble_rng(seed)
        assert main(_prune_argv(tiny_baseline, tmp_path, tmp_path / f"p{i}")) == 0
    capsys.readouterr()
    a, b = (tmp_path / f"p{i}" / "u" / "checkpoints" / "last" for i in (0, 1))
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert run_differences(tmp_path / "p0", tmp_path / "p1") == []


def test_prune_killed_and_resumed_matches_an_uninterrupted_run(
    tiny_baseline, tmp_path, monkeypatch, capsys
):
    # checkpoints every 3 steps, losses logged every 2: the kill at step 6 resumes from step 3
    # with a half-filled loss average, the pruner's accumulated scores and dropout's RNG state
    sets = {"checkpoint_every": 3, "log_every": 2}
    _scramble_rng(1)
    assert main(_prune_argv(tiny_baseline, tmp_path, tmp_path / "straight", **sets)) == 0
    _scramble_rng(2)
    _kill_at(monkeypatch, 6)
    argv = _prune_argv(tiny_baseline, tmp_path, tmp_path / "killed", **sets)
    with pytest.raises(Killed):
        main(argv)
    state = json.loads((tmp_path / "killed/u/checkpoints/last/state.json").read_text())
    assert (
        state["state"]["step"] == 3
    )  # a prune section checkpoints on its way, not only at its end
    _scramble_rng(3)
    assert main(argv) == 0
    capsys.readouterr()
    assert run_differences(tmp_path / "straight", tmp_path / "killed") == []


def test_train_killed_and_resumed_is_bit_exact_with_dropout(
    tiny_corpus, tiny_recipe, tmp_path, monkeypatch, capsys
):
    recipe = tiny_recipe(tiny_corpus, steps=8, eval_every=4, log_every=3, checkpoint_every=2)
    assert recipe["model"]["dropout"] > 0
    path = tiny_recipe_file(tmp_path, recipe)
    _scramble_rng(1)
    assert main(["train", "--recipe", str(path), "--out", str(tmp_path / "straight")]) == 0
    _kill_at(monkeypatch, 7)
    _scramble_rng(2)
    argv = ["train", "--recipe", str(path), "--out", str(tmp_path / "killed")]
    with pytest.raises(Killed):
        main(argv)
    _scramble_rng(3)
    assert main(argv) == 0
    capsys.readouterr()
    assert run_differences(tmp_path / "straight", tmp_path / "killed") == []


def test_a_kill_while_writing_best_at_the_last_evaluation_loses_nothing(
    tiny_corpus, tiny_recipe, tmp_path, monkeypatch, capsys
):
    """`best` is written before `last`: a kill between them redoes the step on resume (found
    by the kill trials: the other order left an old `best` behind for good)."""
    path = tiny_recipe_file(tmp_path, tiny_recipe(tiny_corpus, steps=4, eval_every=2))
    assert main(["train", "--recipe", str(path), "--out", str(tmp_path / "straight")]) == 0
    best = json.loads((tmp_path / "straight/checkpoints/best/state.json").read_text())
    assert best["state"]["step"] == 4  # the last evaluation improved, so it writes `best`
    real = Trainer.save

    def dying(self, where):
        if self.step == 4 and where.name == "best":
            monkeypatch.setattr(Trainer, "save", real)
            raise Killed
        real(self, where)

    monkeypatch.setattr(Trainer, "save", dying)
    argv = ["train", "--recipe", str(path), "--out", str(tmp_path / "killed")]
    with pytest.raises(Killed):
        main(argv)
    assert main(argv) == 0
    capsys.readouterr()
    assert run_differences(tmp_path / "straight", tmp_path / "killed") == []
