import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from speech_standins import TINY_AM, speech_splits

from prunekit.config.asr import AcousticSection, load_asr_recipe, parse_asr_recipe
from prunekit.errors import PrunekitError
from prunekit.models import CTCAcousticModel
from prunekit.pipelines.asr import build_acoustic_model, train_acoustic_model
from prunekit.recipes import builtin
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state

HERE = Path(__file__).parent


def _section(**train) -> AcousticSection:
    raw = {
        "am": {
            "model": {k: v for k, v in TINY_AM.items() if k != "n_mels"},
            "train": {"steps": 8, "lr": 5e-3, "warmup_steps": 2, "eval_every": 4, "threads": 1}
            | train,
            "max_frames": 600,
            "specaugment": {"freq_width": 3, "time_width": 10},
        }
    }
    return parse_asr_recipe(raw).am


@pytest.fixture(scope="module")
def splits():
    return speech_splits(n_train=24, n_dev=8)


def test_builtin_recipe_validates():
    recipe = load_asr_recipe(builtin("asr_demo"))
    assert recipe.am.model["arch"] == "ctc"
    assert recipe.am.specaugment is not None
    model = build_acoustic_model(recipe.am, 80)
    assert isinstance(model, CTCAcousticModel) and model.rnn.bidirectional


def test_recipe_errors_name_the_key():
    with pytest.raises(PrunekitError) as err:
        parse_asr_recipe({"am": {"specaugment": {"time_warp": 3}}})
    assert str(err.value) == (
        "recipe key 'am.specaugment.time_warp' is not known: remove it or fix its spelling"
    )
    with pytest.raises(PrunekitError) as err:
        parse_asr_recipe({}, {"am.max_frames": 0})
    assert str(err.value) == (
        "recipe key 'am.max_frames': Input should be greater than or equal to 1 (got 0): "
        "fix the value"
    )
    with pytest.raises(PrunekitError) as err:
        parse_asr_recipe({"am": {"model": {"arch": "rnn"}}})
    assert str(err.value) == "recipe key 'am.model.arch' is 'rnn': set it to 'ctc'"
    assert parse_asr_recipe({}, {"am.specaugment": None}).am.specaugment is None


def test_n_mels_follows_the_features():
    cfg = parse_asr_recipe({"am": {"model": {"n_mels": 40}}}).am
    with pytest.raises(PrunekitError) as err:
        build_acoustic_model(cfg, 80)
    assert str(err.value) == (
        "am.model.n_mels=40 but the features have 80 mels: remove am.model.n_mels (it follows "
        "the features) or rebuild the features"
    )


def test_train_writes_checkpoints_and_greedy_rates_by_voice(splits, tmp_path):
    metrics = train_acoustic_model(_section(), splits, tmp_path, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["steps"] == 8 and saved["frames_seen"] > 0
    test = saved["greedy"]["test"]
    assert test["unseen"] == ["voice5"]
    n_unseen = sum(v == "voice5" for v in splits["test"].voices)
    assert test["unseen_voices"]["utterances"] == n_unseen
    assert test["seen_voices"]["utterances"] == len(splits["test"]) - n_unseen
    assert test["all"]["words"] == test["seen_voices"]["words"] + test["unseen_voices"]["words"]
    assert saved["greedy"]["dev"]["unseen"] == []  # dev voices all occur in training
    assert "train" not in saved["greedy"]
    assert metrics["greedy"]["test"]["all"]["wer"] == pytest.approx(test["all"]["wer"])
    # the checkpoint rebuilds the model, feature statistics included
    best = tmp_path / "checkpoints" / "best"
    state = read_checkpoint_state(best)["state"]
    assert state["model_config"]["arch"] == "ctc"
    model = build_acoustic_model(_section(), 16)
    load_checkpoint(best, model)
    assert torch.allclose(model.feat_mean, splits["train"].feats.mean(0), atol=1e-4)


def test_a_finished_run_resumes_without_training_again(splits, tmp_path):
    train_acoustic_model(_section(), splits, tmp_path, progress=False)
    again = train_acoustic_model(_section(steps=10), splits, tmp_path, progress=False)
    assert again["steps"] == 10
    assert [s for s, _ in again["history"]["train"]][-1] == 10


def test_missing_split_is_named(splits, tmp_path):
    with pytest.raises(PrunekitError) as err:
        train_acoustic_model(_section(), {"train": splits["train"]}, tmp_path)
    assert str(err.value) == (
        "speech features lack the split(s) ['dev']: pass a dict with keys ['train', 'dev'] "
        "(as speech_features returns)"
    )


WORKER = """
import sys
import torch
sys.path.insert(0, {here!r})
from speech_standins import speech_splits
from prunekit.config.asr import parse_asr_recipe
from prunekit.pipelines.asr import train_acoustic_model
from prunekit.train.distributed import close_world, init_world

world = init_world()
cfg = parse_asr_recipe({raw!r}).am
train_acoustic_model(cfg, speech_splits(n_train=24, n_dev=8), sys.argv[1], world=world,
                     progress=False)
close_world(world)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_one_process(tmp_path):
    """Same global batches, same SpecAugment masks: 2 gloo ranks == 1 process (same dev loss)."""
    cfg = _section(eval_every=8)
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(here=str(HERE), raw={"am": cfg.model_dump(mode="json")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    splits = speech_splits(n_train=24, n_dev=8)
    train_acoustic_model(cfg, splits, tmp_path / "one", progress=False)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    torchrun += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    two = subprocess.run(
        [*torchrun, str(script), str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m1["frames_seen"] == m2["frames_seen"]
    assert m2["history"]["valid"][-1][1] == pytest.approx(m1["history"]["valid"][-1][1], rel=1e-3)
    assert m2["history"]["train"][0][1] != m1["history"]["train"][0][1]  # rank 0 saw half
