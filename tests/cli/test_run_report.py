"""The main job end to end at toy scale: honest rows (sizes at their targets with their steps),
measured speed, checkpoints and export commands in the report, and `prunekit eval` on every kind
of artifact it writes — with the model's own tokenizer, never a new one."""

import json
import shlex
import shutil

import pytest
import sentencepiece as spm

import prunekit.progress as progress
from prunekit.cli.main import main

SECTIONS = [
    {"name": "u", "criterion": "magnitude", "method": "unstructured", "sizes": [0.5, 0.25],
     "steps": 8, "frequency": 2, "ramp": 0.5},
    {"name": "f", "criterion": "magnitude", "method": "factorized", "schedule": "one-shot",
     "sizes": [0.5], "steps": 3},
]  # fmt: skip


def _recipe(tmp_path, corpus):
    recipe = {
        "name": "toy",
        "data": {"corpus": str(corpus), "tokenizer": "sentencepiece", "vocab_size": 200},
        "model": {"arch": "transformer", "d_model": 16, "n_layer": 1, "n_head": 2, "d_ff": 32,
                  "max_rel_pos": 8},
        "train": {"steps": 6, "batch_size": 4, "bptt": 16, "eval_every": 3,
                  "eval_batch_size": 4, "threads": 1},
        "prune": SECTIONS,
        "speed": {"context": 4, "steps": 2, "repeats": 2},
    }  # fmt: skip
    path = tmp_path / "toy.yaml"
    path.write_text(json.dumps(recipe))
    return path


@pytest.fixture(scope="module")
def toy_run(tiny_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    out = tmp / "run"
    assert main(["run", "--recipe", str(_recipe(tmp, tiny_corpus)), "--out", str(out)]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def _eval(capsys, *argv):
    code = main(["eval", *argv, "--threads", "1"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_report_rows_are_honest(toy_run):
    out, metrics = toy_run
    base, rows = metrics["baseline"], metrics["compressed"]
    report = (out / "report.md").read_text()
    assert report.startswith("# prunekit run: recipe `toy` on corpus `")
    assert f"best: step {base['best_step']:,} (lowest validation loss)" in report
    assert "tokens per word (valid / test)" in report and "OOV rate" in report
    u50, u25, f50 = rows
    assert [r["target_params"] for r in rows] == [
        int(0.5 * base["params"]), int(0.25 * base["params"]), int(0.5 * base["params"])
    ]  # fmt: skip
    for r in (u50, u25):  # the schedule landed on each size
        assert abs(r["effective_params"] - r["target_params"]) <= 0.01 * r["target_params"]
    assert (u50["pruned_at_step"], u25["pruned_at_step"], f50["pruned_at_step"]) == (3, 5, 0)
    assert [r["finetune_steps"] for r in rows] == [3, 3, 3]
    for r in rows:  # the masked model's storage is not called its size
        assert "size_bytes" not in r and r["masked_size_bytes"] > base["size_bytes"]
        assert r["compact_size_bytes"] > 0 and r["decode_ms_per_token"] > 0
        line = f"| {r['variant']} | {r['target_params']:,} | {r['effective_params']:,} |"
        assert line in report
        assert f"| {r['pruned_at_step']:,} | {r['finetune_steps']:,} |" in report
        assert f"{r['decode_speedup']:.2f}×" in report and r["checkpoint"] in report
    assert f50["compact_size_bytes"] < base["speed"]["compact_size_bytes"]  # factorized: smaller
    assert "Measured speed-up: batch-1 incremental decoding" in report


def test_export_commands_in_the_report_work_and_exports_evaluate(toy_run, capsys, tmp_path):
    out, metrics = toy_run
    f50 = metrics["compressed"][2]
    report = (out / "report.md").read_text()
    command = next(
        line.split("`")[3] for line in report.splitlines() if f50["checkpoint"] + "`" in line
    )
    argv = shlex.split(command)
    assert argv[:2] == ["prunekit", "export"]
    assert main(argv[1:]) == 0
    export = argv[argv.index("--out") + 1]
    capsys.readouterr()
    code, result, _ = _eval(capsys, export)
    assert code == 0 and result["artifact"]["kind"] == "compact export"
    assert result["artifact"]["tokenizer"] == f"{export}/tokenizer.model"  # its own copy
    assert result["valid_ppl"] == pytest.approx(f50["valid_ppl"], rel=1e-4)
    assert result["size_bytes"] == f50["compact_size_bytes"]
    changed = tmp_path / "changed"  # a tokenizer swapped after the export is refused
    shutil.copytree(export, changed)
    (changed / "tokenizer.model").write_bytes((changed / "tokenizer.model").read_bytes() + b" ")
    code, _, err = _eval(capsys, str(changed))
    assert code == 2 and "tokenizer.model does not match the sha256" in err


def test_eval_takes_every_checkpoint_the_run_writes(toy_run, capsys, tmp_path, monkeypatch):
    out, metrics = toy_run
    base, (u50, u25, f50) = metrics["baseline"], metrics["compressed"]
    # the model's own tokenizer, even with an empty cache and no way to train one
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "empty-cache"))

    def no_training(*args, **kwargs):
        raise AssertionError("a tokenizer was trained")

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", no_training)
    monkeypatch.setattr(progress, "shown", lambda: True)  # as on a terminal
    size = f"size-{u50['target_params']}"
    cases = [
        (out / "baseline" / "checkpoints" / "best", base["valid_ppl"], "checkpoint"),
        (out / "baseline", base["valid_ppl"], "checkpoint"),  # a run folder: its best
        (out / "prune" / "u" / "checkpoints" / "last", u25["valid_ppl"], "pruned checkpoint"),
        (out / "prune" / "u" / size, u50["valid_ppl"], "pruned checkpoint"),
        (out / "prune" / "u" / size / "checkpoints" / "last", u50["valid_ppl"], "pruned checkpoint"),
        (out / "prune" / "f" / f"size-{f50['target_params']}", f50["valid_ppl"], "pruned checkpoint"),
    ]  # fmt: skip
    for path, ppl, kind in cases:
        code, result, err = _eval(capsys, str(path))
        assert code == 0, (path, err)
        assert result["artifact"]["kind"] == kind
        assert result["valid_ppl"] == pytest.approx(ppl, rel=1e-6), path
        assert "scoring valid" in err and "loading" in err  # progress
    code, result, _ = _eval(capsys, str(out / "prune" / "u" / size / "reached"))
    assert code == 0 and result["effective_params"] == u50["effective_params"]
    assert result["artifact"]["step"] == u50["pruned_at_step"]


def test_eval_on_another_corpus_uses_the_models_tokenizer(
    toy_run, tiny_corpus, capsys, tmp_path, monkeypatch
):
    out, metrics = toy_run

    def no_training(*args, **kwargs):
        raise AssertionError("a tokenizer was trained")

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", no_training)
    same = tmp_path / "same"  # the training corpus under another path: the same scores
    same.mkdir()
    for split in ("train", "valid", "test"):
        (same / f"{split}.txt").write_text((tiny_corpus / f"{split}.txt").read_text())
    code, result, err = _eval(capsys, str(out / "baseline"), "--corpus", str(same))
    assert code == 0, err
    assert result["valid_ppl"] == pytest.approx(metrics["baseline"]["valid_ppl"], rel=1e-6)
    assert result["test_ppl"] == pytest.approx(metrics["baseline"]["test_ppl"], rel=1e-6)
    corpus = tmp_path / "greek"
    corpus.mkdir()
    for split in ("train", "valid", "test"):  # characters the tokenizer never saw
        (corpus / f"{split}.txt").write_text("αβγ δέλτα ἔψιλον καὶ\nthe king is here\n" * 30)
    code, result, err = _eval(capsys, str(out / "baseline"), "--corpus", str(corpus))
    assert code == 0, err
    assert "vocab_size" not in err
    assert result["corpus"] == str(corpus) and result["vocab"]["size"] == 200
    assert result["valid_oov_rate"] > 0.1  # the Greek letters are <unk>
    code, _, err = _eval(capsys, str(tmp_path))
    assert code == 2 and "is not a prunekit checkpoint" in err.strip().splitlines()[-1]


def test_rerun_continues_and_a_changed_model_fails_with_one_line(toy_run, tiny_corpus, capsys):
    out, metrics = toy_run
    recipe = out.parent / "toy.yaml"
    argv = ["run", "--recipe", str(recipe), "--out", str(out)]
    assert main(argv) == 0  # finished: nothing retrained
    again = json.loads((out / "metrics.json").read_text())
    assert [r["valid_ppl"] for r in again["compressed"]] == [
        r["valid_ppl"] for r in metrics["compressed"]
    ]
    capsys.readouterr()
    code = main([*argv, "--set", "model.n_layer=2", "--set", "train.steps=8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "holds another run" in err[0] and "model.n_layer 1 -> 2" in err[0]
    assert "--out DIR for a new run, or --no-resume to replace it" in err[0]


def test_run_takes_data(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["run", "--data", str(tiny_corpus), "--out", str(out), "--set", "prune=[]"]
    argv += ["--set", "train.steps=2", "--set", "train.eval_every=2", "--set", "model.d_model=16"]
    argv += ["--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.d_ff=32"]
    argv += ["--set", "data.tokenizer=word", "--set", "train.threads=1"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())["baseline"]
    assert metrics["recipe"]["data"]["corpus"] == str(tiny_corpus)
    # word level: the whole train vocabulary by default, and the report says so
    assert metrics["vocab"]["cap"] is None
    assert metrics["vocab_size"] == metrics["vocab"]["train_words"] + 2
    report = (out / "report.md").read_text()
    assert f"word vocabulary of all {metrics['vocab']['train_words']:,} words" in report
    assert f"{100 * metrics['test_oov_rate']:.2f} %" in report
    capsys.readouterr()
    code = main([*argv, "--set", f"data.corpus={tmp_path}"])
    assert code == 2 and "disagree" in capsys.readouterr().err
