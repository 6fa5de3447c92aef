"""The CLI in-process: bad input gives one line on stderr, exit code 2, and no files left behind."""

import json

import pytest

from prunekit.cli.main import main


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _tiny_sets(corpus):
    return [
        "--set", f"data.corpus={corpus}", "--set", "data.tokenizer=word",
        "--set", "train.steps=4", "--set", "train.eval_every=4", "--set", "train.batch_size=2",
        "--set", "train.bptt=8", "--set", "train.threads=1", "--set", "model.d_model=16",
        "--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.d_ff=32",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"ok\n\xff\xfe bad\n", "UTF-8"),
    ],
    ids=["missing", "empty", "not-utf8"],
)
def test_bad_corpus_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, setup, message):
    corpus = tmp_path / "corpus"
    if setup is not None:
        corpus.mkdir()
        _fill(corpus, skip="train")
        (corpus / "train.txt").write_bytes(setup)
    out = tmp_path / "out"
    code, err = _run(capsys, "run", "--out", str(out), *_tiny_sets(corpus))
    assert code == 2
    assert len(err) == 1 and err[0].startswith("prunekit run: error: ")
    assert message in err[0]
    assert not out.exists()


def _fill(folder, skip):
    for split in ("train", "valid", "test"):
        if split != skip:
            (folder / f"{split}.txt").write_text("some words here\n" * 50)


def test_vocab_larger_than_corpus_supports(tiny_corpus, tmp_path, capsys):
    argv = _tiny_sets(tiny_corpus) + ["--set", "data.tokenizer=sentencepiece"]
    argv += ["--set", "data.vocab_size=60000"]
    code, err = _run(capsys, "run", "--out", str(tmp_path / "out"), *argv)
    assert code == 2
    assert "vocab_size=60000 is larger than this corpus supports" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=-0.1", "recipe key 'train.lr': Input should be greater than 0"),
        ("train.lrr=0.1", "recipe key 'train.lrr' is not known"),
        ("bogus", "--set 'bogus' must look like KEY=VALUE"),
    ],
)
def test_bad_recipe_values(tmp_path, capsys, override, message):
    code, err = _run(capsys, "run", "--out", str(tmp_path / "o"), "--set", override)
    assert code == 2
    assert message in err[0]
    assert not (tmp_path / "o").exists()


def test_train_then_eval_then_corrupt_checkpoint(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *_tiny_sets(tiny_corpus)]) == 0
    capsys.readouterr()
    best = out / "checkpoints" / "best"
    assert main(["eval", str(best), "--threads", "1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["valid_ppl"] > 1 and metrics["params"] > 0

    weights = best / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, err = _run(capsys, "eval", str(best))
    assert code == 2
    assert "does not match the sha256" in err[0] and len(err) == 1


def test_run_writes_report_metrics_and_plot(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "demo"
    short = ["--set", "prune.0.steps=40", "--set", "prune.1.steps=40", "--set", "speed.repeats=2"]
    assert main(["run", "--out", str(out), *_tiny_sets(tiny_corpus), *short]) == 0
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    metrics = json.loads((out / "baseline" / "metrics.json").read_text())
    assert f"{metrics['test_ppl']:,.2f}" in report
    assert "baseline: valid ppl" in capsys.readouterr().out


def _prune_recipe(tmp_path, **section):
    recipe = tmp_path / "prune.yaml"
    body = {"name": "u", "steps": 4, "frequency": 1, "sizes": [0.5], **section}
    recipe.write_text(json.dumps({"prune": [body]}))
    return recipe


def test_prune_command_and_its_bad_inputs(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *_tiny_sets(tiny_corpus)]) == 0
    best = str(out / "checkpoints" / "best")
    capsys.readouterr()
    good = _prune_recipe(tmp_path, criterion="magnitude")
    assert main(["prune", best, "--recipe", str(good), "--out", str(tmp_path / "p")]) == 0
    assert "| u |" in capsys.readouterr().out
    assert json.loads((tmp_path / "p" / "results.json").read_text())["rows"][0]["variant"] == "u"

    cases = [
        ({"scope": {"include": ["nothing.*"]}}, "matches no"),
        ({"sizes": [5]}, "is unreachable"),
        ({"method": "factorized", "sizes": [0.0001]}, "is unreachable"),
        ({"scope": {"include": ["lm_head"], "exclude": ["lm_head"]}}, "conflict"),
        ({"criterion": "psychic"}, "psychic"),
    ]
    for section, message in cases:
        bad = _prune_recipe(tmp_path, **section)
        code, err = _run(capsys, "prune", best, "--recipe", str(bad), "--out", str(tmp_path / "x"))
        assert code == 2, section
        assert len(err) == 1 and message in err[0], (section, err)
        assert not (tmp_path / "x").exists()
