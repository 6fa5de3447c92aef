import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

from prunekit.config import parse_recipe
from prunekit.pipelines.lm_baseline import build_lm, lm_task, prepare_data, train_baseline
from prunekit.train.trainer import Trainer


def _trainer(cfg, data, out):
    model = build_lm(cfg, data.tokenizer.vocab_size)
    return Trainer(model, lm_task(data, cfg), cfg.train, out, progress=False)


def test_resume_reproduces_the_uninterrupted_losses(tiny_corpus, tmp_path, tiny_recipe):
    cfg = parse_recipe(tiny_recipe(tiny_corpus, steps=6, eval_every=100))
    data = prepare_data(cfg)

    straight = _trainer(cfg, data, tmp_path / "a")
    straight.fit()

    first = _trainer(cfg, data, tmp_path / "b")
    first.fit(steps=3)  # validates and writes checkpoints/last at step 3
    resumed = _trainer(cfg, data, tmp_path / "b")  # a fresh model, optimizer and RNG
    torch.manual_seed(1234)
    resumed.resume(tmp_path / "b" / "checkpoints" / "last")
    assert resumed.step == 3
    resumed.fit()

    expected = [loss for _, loss in straight.history.train]
    got = [loss for _, loss in resumed.history.train]
    assert len(got) == len(expected) == 6
    assert got == pytest.approx(expected, abs=1e-6)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_training_lowers_validation_loss_and_writes_metrics(tiny_corpus, tmp_path, tiny_recipe):
    cfg = parse_recipe(tiny_recipe(tiny_corpus, steps=30, eval_every=15, lr=0.01))
    metrics = train_baseline(cfg, tmp_path, progress=False)
    uniform = math.log(metrics["vocab_size"])  # the loss of a model that learned nothing
    assert metrics["valid_loss"] < uniform - 1.0
    assert metrics["valid_loss"] == pytest.approx(min(v for _, v in metrics["history"]["valid"]))
    assert metrics["params"] == sum(
        p.numel() for p in build_lm(cfg, metrics["vocab_size"]).parameters()
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_ppl"] == pytest.approx(metrics["test_ppl"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best", "last"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, env):
    cmd = [sys.executable, "-m", "torch.distributed.run", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_ddp_two_processes_match_one_process(tiny_corpus, tmp_path, tiny_recipe):
    """Same global batch: 2 gloo ranks x 2 rows vs 1 process x 4 rows -> same valid ppl (1 %)."""
    sets = ["train.steps=20", "train.eval_every=20", "train.lr=0.01", "model.dropout=0.0"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(tiny_recipe(tiny_corpus)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["-m", "prunekit.cli.main", "train", "--recipe", str(recipe)]
    for s in sets:
        common += ["--set", s]
    one = subprocess.run(
        [sys.executable, *common, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun(
        [
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        env,
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[:3000]
    ppl_one = json.loads((tmp_path / "one" / "metrics.json").read_text())["valid_ppl"]
    ppl_two = json.loads((tmp_path / "two" / "metrics.json").read_text())["valid_ppl"]
    assert ppl_two == pytest.approx(ppl_one, rel=0.01)
