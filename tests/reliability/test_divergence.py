"""A run that diverges stops with one line naming the step and the learning rate; the last good
checkpoint stays; no NaN is ever written into a checkpoint or into JSON."""

import json
import math

import pytest
import torch
from reliability_helpers import record, tiny_recipe_file
from safetensors.torch import load_file, save_file

from prunekit.atomic import write_json
from prunekit.cli.main import main
from prunekit.config import parse_recipe
from prunekit.errors import PrunekitError
from prunekit.export.io import file_sha256
from prunekit.pipelines.lm_baseline import build_lm, lm_task, prepare_data, train_baseline
from prunekit.pipelines.lm_compress import load_trained
from prunekit.train.checkpoint import load_checkpoint, save_checkpoint
from prunekit.train.task import LMTask
from prunekit.train.trainer import Trainer


class _Poisoned(LMTask):
    """An LMTask whose loss turns bad at optimizer step `at` (1-based): NaN, or NaN gradients."""

    def __init__(self, task: LMTask, at: int, kind: str):
        super().__init__(task.train, task.valid, eval_batch_size=4, bptt=task.bptt)
        self.at, self.kind, self.calls = at, kind, 0

    def loss(self, model, batch):
        loss = super().loss(model, batch)
        self.calls += 1
        if self.calls < self.at:
            return loss
        if self.kind == "loss":
            return loss * float("nan")
        w = next(model.parameters())
        return loss + torch.sqrt((w - w.detach()).abs()).sum()  # value 0, gradient NaN


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_divergence_after_good_evaluations_stops_and_keeps_the_last_good_checkpoint(
    tiny_corpus, tiny_recipe, tmp_path, kind
):
    cfg = parse_recipe(tiny_recipe(tiny_corpus, steps=8, eval_every=2))
    data = prepare_data(cfg)
    model = build_lm(cfg, data.tokenizer.vocab_size)
    trainer = Trainer(
        model, _Poisoned(lm_task(data, cfg), 5, kind), cfg.train, tmp_path, progress=False
    )
    with pytest.raises(PrunekitError) as err:
        trainer.fit()
    message = str(err.value)
    record("divergence", f"{kind} NaN at step 5 after evaluations at 2 and 4", message, True)
    assert message.startswith("training diverged at step 5 (learning rate ")
    assert "lower the learning rate" in message and "\n" not in message
    assert all(math.isfinite(p.abs().sum().item()) for p in model.parameters())
    assert load_trained_step(tmp_path / "checkpoints" / "last") == 4
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").read_bytes() != b""


def test_a_run_that_diverges_writes_no_metrics_and_does_not_report_the_old_best(
    tiny_corpus, tiny_recipe, tmp_path, monkeypatch
):
    cfg = parse_recipe(tiny_recipe(tiny_corpus, steps=8, eval_every=2))
    real = LMTask.loss
    calls = {"n": 0}

    def poisoned(self, model, batch):
        calls["n"] += 1
        return real(self, model, batch) * (float("nan") if calls["n"] == 6 else 1.0)

    monkeypatch.setattr(LMTask, "loss", poisoned)
    with pytest.raises(PrunekitError, match=r"^training diverged at step 6 "):
        train_baseline(cfg, tmp_path, progress=False)
    assert not (tmp_path / "metrics.json").exists()
    monkeypatch.setattr(LMTask, "loss", real)  # the last good checkpoint (step 4) resumes
    metrics = train_baseline(cfg, tmp_path, progress=False)
    assert metrics["steps"] == 8 and [s for s, _ in metrics["history"]["valid"]] == [2, 4, 6, 8]


def test_cli_huge_learning_rate_is_one_line_exit_2(tiny_corpus, tiny_recipe, tmp_path, capsys):
    path = tiny_recipe_file(tmp_path, tiny_recipe(tiny_corpus, lr=1e4))
    code = main(["train", "--recipe", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()  # progress bars, then the error
    record("divergence", "prunekit train --set train.lr=1e4", err[-1] if err else "", code == 2)
    assert code == 2 and err[-1].startswith("prunekit train: error: training diverged at step")
    assert "learning rate 1e+04" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "o" / "checkpoints").exists()  # it diverged before the first one


def load_trained_step(path) -> int:
    load_trained(path)  # loads (sha256, finite, shapes checked)
    return json.loads((path / "state.json").read_text())["state"]["step"]


def _nan_checkpoint(src, dst):
    """Copy a checkpoint with every weight set to NaN and the sha256 fixed up (as a buggy tool
    or an old prunekit would have written it)."""
    dst.mkdir()
    weights = {
        k: torch.full_like(v, float("nan")) for k, v in load_file(src / "model.safetensors").items()
    }
    save_file(weights, str(dst / "model.safetensors"))
    (dst / "extra.safetensors").write_bytes((src / "extra.safetensors").read_bytes())
    meta = json.loads((src / "state.json").read_text())
    meta["files"] = {n: file_sha256(dst / n) for n in ("model.safetensors", "extra.safetensors")}
    (dst / "state.json").write_text(json.dumps(meta))


def test_eval_and_resume_refuse_a_nan_checkpoint(tiny_baseline, tmp_path, capsys):
    recipe, best = tiny_baseline
    bad = tmp_path / "nan"
    _nan_checkpoint(best, bad)
    code = main(["eval", str(bad), "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    record(
        "divergence", "prunekit eval of an all-NaN checkpoint", err[-1] if err else "", code == 2
    )
    assert code == 2 and len(err) == 1 and "NaN or infinite values" in err[0]
    cfg = parse_recipe(recipe)
    data = prepare_data(cfg)
    trainer = Trainer(
        build_lm(cfg, data.tokenizer.vocab_size), lm_task(data, cfg), cfg.train, tmp_path
    )
    with pytest.raises(PrunekitError, match="NaN or infinite"):
        trainer.resume(bad)


def test_a_nan_model_is_never_written(tmp_path):
    model = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "ck", model, {"v": 1})
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(PrunekitError, match=r"refusing to write checkpoint .*'weight' holds NaN"):
        save_checkpoint(tmp_path / "ck", model, {"v": 2})
    assert load_checkpoint(tmp_path / "ck", torch.nn.Linear(2, 2))[0] == {"v": 1}


def test_json_never_holds_nan(tmp_path):
    write_json(tmp_path / "m.json", {"ppl": float("nan"), "h": [[1, float("inf")]], "ok": 2.5})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "ppl": None,
        "h": [[1, None]],
        "ok": 2.5,
    }
