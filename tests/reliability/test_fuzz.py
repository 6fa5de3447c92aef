"""Property-based fuzzing (hypothesis) of recipes, --set values, corpora, and checkpoint and
manifest bytes: every case either works or raises a one-line PrunekitError (exit 2 at the CLI).
Anything else (a traceback) fails the test with the smallest example hypothesis can find.

The default run keeps the cases few and in-process; `make test-faults` runs the `slow` variants
with many more cases, and whole `prunekit run` jobs on fuzzed recipes."""

import copy
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from fault_harness import integrity_problems
from fuzz_strategies import (
    byte_mutation,
    corpus_bytes,
    mutate,
    recipe_edits,
    set_pairs,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import record

from prunekit.cli.common import parse_overrides
from prunekit.cli.main import main
from prunekit.config import load_recipe
from prunekit.config.recipe import set_dotted
from prunekit.data import LMBatches, build_tokenizer, load_corpus
from prunekit.errors import PrunekitError
from prunekit.export.io import load_compact, save_compact
from prunekit.pipelines.lm_baseline import build_lm
from prunekit.pipelines.lm_compress import check_sections
from prunekit.seeding import seed_everything
from prunekit.train.task import LMTask
from prunekit.train.trainer import Trainer

CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
FAST = settings(
    max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=CHECKS
)
MANY = settings(max_examples=400, deadline=None, database=None, suppress_health_check=CHECKS)
SLOW = [pytest.mark.slow, pytest.mark.faults]
V = 40
STREAM = torch.arange(3000) % V  # (3000,) a synthetic token stream


def _outcome(name: str, fn) -> str:
    """Run `fn`; 'worked' or 'one-line error' (a PrunekitError); anything else propagates."""
    try:
        fn()
    except PrunekitError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        record("fuzz", name, "one-line error", True, message=message[:160])
        return "one-line error"
    record("fuzz", name, "worked", True)
    return "worked"


def _pipeline(cfg, folder: Path) -> None:
    """What the CLI does with a recipe before the data: seed, build, check sections, one step."""
    seed_everything(cfg.train.seed)
    model = build_lm(cfg, V)
    check_sections(cfg, model)
    task = LMTask(
        LMBatches(STREAM, cfg.train.batch_size, cfg.train.bptt),
        STREAM[:500],
        eval_batch_size=cfg.train.eval_batch_size,
        bptt=cfg.train.bptt,
    )
    trainer = Trainer(
        model, task, cfg.train.model_copy(update={"steps": 1}), folder, progress=False
    )
    trainer.train_step()


def _base(tiny_recipe) -> dict:
    recipe = tiny_recipe(Path("unused"), steps=2, eval_every=2)
    recipe["prune"] = [{"name": "u", "steps": 4, "frequency": 1, "sizes": [0.5]}]
    return recipe


def _recipe_case(tiny_recipe, edits) -> None:
    raw = _base(tiny_recipe)
    with tempfile.TemporaryDirectory() as tmp:

        def run():
            for dotted, value in edits:
                set_dotted(raw, dotted, value)
            path = Path(tmp) / "r.yaml"
            path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
            _pipeline(load_recipe(path), Path(tmp) / "out")

        _outcome("recipe files", run)


@FAST
@given(edits=recipe_edits())
def test_fuzzed_recipes_build_or_fail_in_one_line(tiny_recipe, edits):
    _recipe_case(tiny_recipe, edits)


@pytest.mark.slow
@pytest.mark.faults
@MANY
@given(edits=recipe_edits())
def test_fuzzed_recipes_many(tiny_recipe, edits):
    _recipe_case(tiny_recipe, edits)


def _set_case(tiny_recipe, pairs) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(json.dumps(_base(tiny_recipe)))
        _outcome(
            "--set values",
            lambda: _pipeline(load_recipe(path, parse_overrides(pairs)), Path(tmp) / "o"),
        )


@FAST
@given(pairs=st.lists(set_pairs, min_size=1, max_size=3))
def test_fuzzed_set_values_build_or_fail_in_one_line(tiny_recipe, pairs):
    _set_case(tiny_recipe, pairs)


@pytest.mark.slow
@pytest.mark.faults
@MANY
@given(pairs=st.lists(set_pairs, min_size=1, max_size=3))
def test_fuzzed_set_values_many(tiny_recipe, pairs):
    _set_case(tiny_recipe, pairs)


def _corpus_case(splits: dict[str, bytes], tokenizer: str, vocab: int = 0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, data in splits.items():
            (folder / f"{name}.txt").write_bytes(data)

        def run():
            corpus = load_corpus(folder)
            tok = build_tokenizer(
                tokenizer,
                corpus.train,
                vocab,
                cache_dir=folder / "cache",
            )
            for text in (corpus.train, corpus.valid, corpus.test):
                stream = tok.encode_corpus(text)
            LMBatches(stream, 2, 2)

        _outcome(f"corpora ({tokenizer})", run)
        assert not [p for p in folder.rglob(".*")]  # no temp file left behind


corpora = st.fixed_dictionaries(
    {"train": corpus_bytes, "valid": corpus_bytes, "test": corpus_bytes}
)


@FAST
@given(splits=corpora)
def test_fuzzed_corpora_load_or_fail_in_one_line(splits):
    _corpus_case(splits, "word")


@pytest.mark.slow
@pytest.mark.faults
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=CHECKS)
@given(splits=corpora, vocab=st.integers(3, 40))
def test_fuzzed_corpora_sentencepiece(splits, vocab):
    _corpus_case(splits, "sentencepiece", vocab)


@pytest.fixture(scope="module")
def saved_trainer(tiny_recipe, tmp_path_factory):
    """A checkpoint two steps into a tiny run (optimizer moments, RNG, history filled)."""
    from prunekit.config import parse_recipe

    cfg = parse_recipe(_base(tiny_recipe))
    folder = tmp_path_factory.mktemp("fuzz-checkpoint")

    def trainer(out=folder):
        torch.manual_seed(0)
        task = LMTask(LMBatches(STREAM, 4, 16), STREAM[:200], eval_batch_size=4, bptt=16)
        return Trainer(build_lm(cfg, V), task, cfg.train, out, progress=False)

    first = trainer()
    first.fit(steps=2)
    return trainer, folder / "checkpoints" / "last"


def _checkpoint_case(saved_trainer, name: str, mutation) -> None:
    make, source = saved_trainer
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "last"
        shutil.copytree(source, ck)
        data = mutate((ck / name).read_bytes(), mutation)
        if data == (ck / name).read_bytes():
            record("fuzz", f"checkpoint bytes ({name})", "unchanged by the mutation", True)
            return
        if data is None:
            (ck / name).unlink()
        else:
            (ck / name).write_bytes(data)
        trainer = make(Path(tmp) / "out")
        before = copy.deepcopy(trainer.model.state_dict())

        def run():
            try:
                trainer.resume(ck)
            except PrunekitError:
                for key, value in trainer.model.state_dict().items():  # refused before loading
                    assert torch.equal(value, before[key]) or name == "state.json", key
                raise
            trainer.fit(steps=trainer.step + 1)

        _outcome(f"checkpoint bytes ({name})", run)


files = st.sampled_from(["state.json", "model.safetensors", "extra.safetensors"])


@FAST
@given(name=files, data=st.data())
def test_fuzzed_checkpoint_bytes_load_or_fail_in_one_line(saved_trainer, name, data):
    size = (saved_trainer[1] / name).stat().st_size
    _checkpoint_case(saved_trainer, name, data.draw(byte_mutation(size, name.endswith(".json"))))


@pytest.mark.slow
@pytest.mark.faults
@MANY
@given(name=files, data=st.data())
def test_fuzzed_checkpoint_bytes_many(saved_trainer, name, data):
    size = (saved_trainer[1] / name).stat().st_size
    _checkpoint_case(saved_trainer, name, data.draw(byte_mutation(size, name.endswith(".json"))))


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory):
    """A compact export (weights.safetensors + manifest.json) of a pruned tiny Transformer."""
    from prunekit.export.compact import compact
    from prunekit.models import build_model
    from prunekit.prune import OneShot, PruneConfig, prune_

    torch.manual_seed(0)
    cfg = {"arch": "transformer", "vocab_size": 23, "d_model": 16, "n_layer": 1, "n_head": 2}
    model = build_model({**cfg, "d_ff": 32, "dropout": 0.0, "max_rel_pos": 4})
    prune_(model, PruneConfig(method="structured", schedule=OneShot(sparsity=0.5)))
    small, manifest = compact(model, sparse="dense", dense_layout="rows", repeats=1)
    folder = tmp_path_factory.mktemp("fuzz-export") / "export"
    save_compact(small, manifest, folder)
    return folder


def _manifest_case(folder: Path, name: str, mutation) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy_ = Path(tmp) / "export"
        shutil.copytree(folder, copy_)
        data = mutate((copy_ / name).read_bytes(), mutation)
        if data == (copy_ / name).read_bytes():
            record("fuzz", f"manifest bytes ({name})", "unchanged by the mutation", True)
            return
        if data is None:
            (copy_ / name).unlink()
        else:
            (copy_ / name).write_bytes(data)
        _outcome(f"manifest bytes ({name})", lambda: load_compact(copy_))


exports = st.sampled_from(["manifest.json", "weights.safetensors"])


@FAST
@given(name=exports, data=st.data())
def test_fuzzed_export_bytes_load_or_fail_in_one_line(export_folder, name, data):
    size = (export_folder / name).stat().st_size
    _manifest_case(export_folder, name, data.draw(byte_mutation(size, name.endswith(".json"))))


@pytest.mark.slow
@pytest.mark.faults
@MANY
@given(name=exports, data=st.data())
def test_fuzzed_export_bytes_many(export_folder, name, data):
    size = (export_folder / name).stat().st_size
    _manifest_case(export_folder, name, data.draw(byte_mutation(size, name.endswith(".json"))))


@pytest.mark.slow
@pytest.mark.faults
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=CHECKS)
@given(edits=recipe_edits(junk=0.2))
def test_fuzzed_recipes_through_the_whole_cli(tiny_corpus, tiny_recipe, edits, capsys):
    """`prunekit run` end to end (train, prune, report) on fuzzed recipes: exit 0, or exit 2 with
    one line and no run folder left half-made by the refusal."""
    raw = tiny_recipe(tiny_corpus, steps=2, eval_every=2)
    raw["prune"] = [{"name": "u", "steps": 2, "frequency": 1, "sizes": [0.5]}]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for dotted, value in edits:
                set_dotted(raw, dotted, value)
        except PrunekitError:
            return
        for key, cap in (("steps", 3), ("batch_size", 8), ("bptt", 16)):  # keep each case short
            value = raw.get("train", {}).get(key) if isinstance(raw.get("train"), dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                raw["train"][key] = cap
        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        code = main(["run", "--recipe", str(path), "--out", str(Path(tmp) / "run")])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        ok = code == 0 or (code == 2 and lines[-1].startswith("prunekit run: error: "))
        out = Path(tmp) / "run"
        ok = ok and not (out.exists() and integrity_problems(out))  # nothing half-written
        outcome = "worked" if code == 0 else "one-line error"
        message = lines[-1][:160] if lines else ""
        record("fuzz", "prunekit run on fuzzed recipes", outcome, ok, message=message)
        assert ok and "Traceback" not in err, err[-2000:]


# Cases the fuzzers found (each once a traceback), kept as plain regression tests.


def test_found_model_arch_that_is_a_list():
    with pytest.raises(PrunekitError, match=r"model.arch=\[\] is not supported"):
        build_lm(load_recipe(None, {"model.arch": []}), V)


def test_found_train_split_of_control_characters(tmp_path):
    for name, text in (("train", "\x1b\n"), ("valid", "the\n"), ("test", "the\n")):
        (tmp_path / f"{name}.txt").write_text(text)
    corpus = load_corpus(tmp_path)
    with pytest.raises(
        PrunekitError, match="has no characters a sentencepiece tokenizer can learn"
    ):
        build_tokenizer("sentencepiece", corpus.train, 30, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("rng", "numpy"), None, "is corrupt (TypeError"),
        (("optimizer", "param_groups", 0, "betas"), None, "is corrupt (TypeError"),
        (("optimizer", "param_groups", 0, "params", 0), 1, "is corrupt (ValueError"),
        (("state", "history", "pending"), ["x"], "has a corrupt run state (TypeError"),
        (("state", "step"), -3, "has a corrupt run state (TypeError"),
    ],
)
def test_found_state_json_edits(saved_trainer, tmp_path, path, value, message):
    make, source = saved_trainer
    shutil.copytree(source, tmp_path / "last")
    meta = json.loads((tmp_path / "last" / "state.json").read_text())
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / "last" / "state.json").write_text(json.dumps(meta))
    with pytest.raises(PrunekitError, match=message.replace("(", r"\(")):
        make(tmp_path / "out").resume(tmp_path / "last")


def test_found_unknown_scope_key():
    cfg = load_recipe(None, {"prune": [{"name": "u", "scope": {"includ": ["lm_head"]}}]})
    with pytest.raises(PrunekitError, match="scope key 'includ' is not known: use module_types"):
        check_sections(cfg, build_lm(cfg, V))
