"""Bad output paths and prune targets are refused before any work; `prune --recipe` follows the
recipe; progress shows what is running."""

import os
import shutil
import subprocess

import pytest
from reliability_helpers import prune_section, record, tiny_recipe_file

import prunekit.progress
from prunekit.cli.main import main
from prunekit.cli.prune import prune_recipe
from prunekit.config import load_recipe, parse_recipe
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import build_lm, lm_task, prepare_data
from prunekit.recipes import builtin
from prunekit.train.checkpoint import read_checkpoint_state
from prunekit.train.trainer import Trainer


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process cannot write into, even as root (a read-only tmpfs)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)]
    if shutil.which("mount") is None or subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("root without the right to mount a read-only tmpfs")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def _commands(out, best, recipe):
    return {
        "run": ["run", "--recipe", recipe, "--out", out],
        "train": ["train", "--recipe", recipe, "--out", out],
        "prune": ["prune", best, "--recipe", recipe, "--out", out],
        "bench paper": ["bench", "paper", "--recipe", "paper_tiny", "--out", out, "--cells", "x"],
        "export": ["export", best, "--out", out, "--dense"],
    }


@pytest.mark.parametrize("case", ["existing file", "under a file", "read-only folder"])
def test_bad_out_is_one_line_before_any_work(tiny_baseline, tmp_path, capsys, case, request):
    _, best = tiny_baseline
    missing_corpus = {
        "data": {"corpus": str(tmp_path / "no-such-corpus")},
        "prune": [prune_section()],
    }
    recipe = tiny_recipe_file(tmp_path, missing_corpus)  # any work would fail on the corpus
    if case == "read-only folder":
        out = request.getfixturevalue("unwritable") / "out"
    else:
        (tmp_path / "file").write_text("not a folder")
        out = tmp_path / "file" if case == "existing file" else tmp_path / "file" / "sub"
    for name, argv in _commands(out, best, recipe).items():
        code, err = _run(capsys, *argv)
        record("bad --out", f"{name} --out <{case}>", err[-1] if err else "", code == 2)
        assert code == 2 and len(err) == 1, (name, err)
        assert err[0].startswith(f"prunekit {name.split()[0]}: error: --out {out}"), (name, err)
        assert (
            "is a file, not a folder" if case != "read-only folder" else "is not writable"
        ) in err[0]


@pytest.mark.parametrize("sizes", [[5_000_000], [1.0], [0.5, 49_440]])
def test_prune_target_at_or_above_the_model_size_is_refused(tiny_baseline, tmp_path, capsys, sizes):
    _, best = tiny_baseline
    recipe = tiny_recipe_file(tmp_path, {"prune": [prune_section(sizes=sizes)]})
    code, err = _run(capsys, "prune", best, "--recipe", recipe, "--out", tmp_path / "o")
    record("bad input", f"prune sizes {sizes} on a 49,440-parameter model", err[-1], code == 2)
    assert code == 2 and len(err) == 1
    assert "is not below the model's 49,440 parameters" in err[0]
    assert not (tmp_path / "o").exists()


def _state(recipe: dict) -> dict:
    return {"run": {"recipe": recipe}, "model_config": {"vocab_size": 2000}}


def test_prune_takes_built_in_recipe_names():
    demo = load_recipe(builtin("demo"))
    cfg = prune_recipe(_state(demo.model_dump(mode="json")), "demo", {})
    assert [s.name for s in cfg.prune] == ["unstructured-taylor", "factorized-taylor"]
    with pytest.raises(PrunekitError, match=r"recipe nope does not exist: .*\(.*\bdemo, .*paper"):
        prune_recipe(_state(demo.model_dump(mode="json")), "nope", {})


def test_prune_honours_the_recipes_train_section(tiny_baseline, tmp_path):
    recipe, best = tiny_baseline
    state = read_checkpoint_state(best)["state"]
    body = {
        "train": {"batch_size": 2, "bptt": 8, "seed": 7, "threads": 1},
        "prune": [prune_section()],
    }
    cfg = prune_recipe(state, str(tiny_recipe_file(tmp_path, body)), {"train.lr": 0.5})
    assert (cfg.train.batch_size, cfg.train.bptt, cfg.train.seed, cfg.train.lr) == (2, 8, 7, 0.5)
    assert cfg.data == parse_recipe(recipe).data and cfg.model == recipe["model"]
    plain = prune_recipe(state, str(tiny_recipe_file(tmp_path, {"prune": [prune_section()]})), {})
    assert plain.train == parse_recipe(recipe).train  # no train section: the checkpoint's


@pytest.mark.parametrize(
    ("body", "sets", "message"),
    [
        (
            {"model": {"d_model": 64}},
            {},
            "sets model.d_model=64, the checkpoint's 32",
        ),
        ({}, {"model.n_layer": 3}, "sets model.n_layer=3, the checkpoint's 2"),
        (
            {"data": {"corpus": "shakespeare"}},
            {},
            "sets data.corpus='shakespeare', the checkpoint's",
        ),
        ({}, {"data.vocab_size": 100}, "sets data.vocab_size=100, the checkpoint's 500"),
    ],
)
def test_prune_refuses_data_or_model_that_differ_from_the_checkpoint(
    tiny_baseline, tmp_path, body, sets, message
):
    recipe, best = tiny_baseline
    if "model" in body:  # the checkpoint's model section with one value changed
        body = {"model": {**recipe["model"], **body["model"]}}
    state = read_checkpoint_state(best)["state"]
    path = tiny_recipe_file(tmp_path, {**body, "prune": [prune_section()]})
    with pytest.raises(
        PrunekitError, match="prune a checkpoint trained with these settings"
    ) as err:
        prune_recipe(state, str(path), sets)
    assert message in str(err.value)


def test_same_model_and_data_sections_are_accepted(tiny_baseline, tmp_path):
    recipe, best = tiny_baseline
    state = read_checkpoint_state(best)["state"]
    model = {k: v for k, v in recipe["model"].items() if k != "max_rel_pos"}  # a default left out
    body = {
        "data": recipe["data"],
        "model": {**model, "max_rel_pos": 8},
        "prune": [prune_section()],
    }
    assert prune_recipe(state, str(tiny_recipe_file(tmp_path, body)), {}).prune[0].name == "u"


def test_a_set_value_that_is_not_yaml_is_one_line(capsys, tmp_path):
    code, err = _run(capsys, "train", "--out", tmp_path / "o", "--set", "train.steps=[1,")
    assert code == 2 and len(err) == 1 and "the value is not valid YAML" in err[0]


def test_progress_bars_say_what_runs(tiny_corpus, tiny_recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prunekit.progress, "shown", lambda: True)
    recipe = tiny_recipe(tiny_corpus, steps=2, eval_every=2)
    recipe["data"].update(tokenizer="sentencepiece", vocab_size=77)
    cfg = parse_recipe(recipe)
    data = prepare_data(cfg)
    trainer = Trainer(build_lm(cfg, 77), lm_task(data, cfg), cfg.train, tmp_path, label="prune u")
    trainer.fit()
    err = capsys.readouterr().err
    assert "prunekit: data: reading" in err
    assert "data: training a unigram sentencepiece tokenizer (77 units)" in err
    assert "prune u: 100%" in err
