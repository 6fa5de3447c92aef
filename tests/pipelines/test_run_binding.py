"""A run folder is bound to its corpus and recipe: resuming with another one fails or starts a new
run, never mixes; more steps extend a run, fewer than done fail."""

import json
import logging

import pytest

from prunekit.config import parse_recipe
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import train_baseline
from prunekit.pipelines.run_binding import FINGERPRINT, bind, differences


def _cfg(tiny_recipe, corpus, model=None, **train):
    raw = tiny_recipe(corpus, **{"steps": 4, "eval_every": 2, **train})
    raw["model"].update(model or {})
    return parse_recipe(raw)


@pytest.fixture
def other_corpus(tiny_corpus, tmp_path):
    """The tiny corpus with its train split cut short: same path layout, other text."""
    folder = tmp_path / "other"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        lines = (tiny_corpus / f"{split}.txt").read_text().splitlines()
        (folder / f"{split}.txt").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    return folder


def test_another_corpus_or_model_fails_with_one_line(
    tiny_corpus, other_corpus, tiny_recipe, tmp_path
):
    out = tmp_path / "run"
    first = train_baseline(_cfg(tiny_recipe, tiny_corpus), out, progress=False)
    weights = (out / "checkpoints" / "best" / "model.safetensors").read_bytes()
    with pytest.raises(PrunekitError) as err:
        train_baseline(_cfg(tiny_recipe, other_corpus), out, progress=False)
    msg = str(err.value)
    assert "holds another run" in msg and "corpus sha256" in msg and "\n" not in msg
    assert "--out DIR for a new run, or --no-resume to replace it" in msg
    with pytest.raises(PrunekitError, match="model.n_layer 2 -> 3"):
        train_baseline(_cfg(tiny_recipe, tiny_corpus, {"n_layer": 3}), out, progress=False)
    with pytest.raises(PrunekitError, match="train.lr 0.003 -> 0.01"):
        train_baseline(_cfg(tiny_recipe, tiny_corpus, lr=0.01), out, progress=False)
    # nothing was touched
    assert (out / "checkpoints" / "best" / "model.safetensors").read_bytes() == weights
    again = train_baseline(_cfg(tiny_recipe, tiny_corpus), out, progress=False)
    assert again["valid_ppl"] == first["valid_ppl"]


def test_no_resume_replaces_the_run(tiny_corpus, other_corpus, tiny_recipe, tmp_path):
    out = tmp_path / "run"
    train_baseline(_cfg(tiny_recipe, tiny_corpus), out, progress=False)
    m = train_baseline(_cfg(tiny_recipe, other_corpus), out, resume=False, progress=False)
    stored = json.loads((out / FINGERPRINT).read_text())
    assert stored["binding"]["corpus_sha256"] == m["corpus_sha256"]
    assert train_baseline(_cfg(tiny_recipe, other_corpus), out, progress=False)["steps"] == 4


def test_fewer_steps_than_done_fail_more_steps_continue(tiny_corpus, tiny_recipe, tmp_path, caplog):
    out = tmp_path / "run"
    train_baseline(_cfg(tiny_recipe, tiny_corpus, steps=4), out, progress=False)
    with pytest.raises(PrunekitError, match="trained 4 steps, more than train.steps=2: pass"):
        train_baseline(_cfg(tiny_recipe, tiny_corpus, steps=2), out, progress=False)
    with caplog.at_level(logging.WARNING):
        m = train_baseline(_cfg(tiny_recipe, tiny_corpus, steps=6), out, progress=False)
    assert "continuing from step 4 to 6 steps (it was planned for 4" in caplog.text
    assert m["steps"] == 6
    assert m["steps_history"] == [{"from_step": 0, "steps": 4}, {"from_step": 4, "steps": 6}]
    # settings that do not change the weights may change on a rerun
    m = train_baseline(
        _cfg(tiny_recipe, tiny_corpus, steps=6, eval_every=3, threads=2, log_every=2),
        out,
        progress=False,
    )
    assert m["steps"] == 6 and len(m["steps_history"]) == 2


def test_a_run_without_fingerprint_is_not_resumed_blindly(tiny_corpus, tiny_recipe, tmp_path):
    out = tmp_path / "run"
    train_baseline(_cfg(tiny_recipe, tiny_corpus), out, progress=False)
    (out / FINGERPRINT).unlink()  # as an older prunekit left it
    with pytest.raises(PrunekitError, match="no fingerprint.json \\(an older prunekit wrote"):
        train_baseline(_cfg(tiny_recipe, tiny_corpus), out, progress=False)


def test_bind_redo_and_fresh_folders(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    assert bind(folder, {"a": 1})["binding"] == {"a": 1}  # nothing there: just recorded
    assert bind(folder, {"a": 2})["binding"] == {"a": 2}  # still no results: no conflict
    (folder / "result.json").write_text("{}")
    (folder / "size-5").mkdir()
    bind(folder, {"a": 3}, redo=True)
    assert not (folder / "result.json").exists() and not (folder / "size-5").exists()
    assert differences(
        {"m": {"x": 1}, "k_sha256": "a" * 64}, {"m": {"x": 2}, "k_sha256": "b" * 64}
    ) == ("k sha256 aaaaaaaa -> bbbbbbbb, m.x 1 -> 2")
