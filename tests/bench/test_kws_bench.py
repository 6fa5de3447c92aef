"""`prunekit bench kws` end to end on a small synthetic task (temporal patterns, not speech)."""

import json
import shutil

import pytest
import torch
import yaml

from prunekit.bench.kws import run_kws_bench
from prunekit.bench.kws_data import KWSData, register_provider, toy_data
from prunekit.bench.kws_report import to_markdown
from prunekit.bench.kws_spec import ROWS, KWSBenchSpec
from prunekit.cli.main import main
from prunekit.errors import PrunekitError

TINY = {"epochs": 15, "batch_size": 40, "hidden": 16, "gru_hidden": 16, "w_rank": 4, "u_rank": 6,
        "s_w": 0.5, "s_u": 0.5, "trimlevel": 3, "timing_clips": 2, "timing_repeats": 1}  # fmt: skip


def _tiny_data(seed: int = 0) -> KWSData:
    return toy_data(seed, n_train=120, n_dev=60, n_test=120, frames=24)


register_provider("tiny-test", _tiny_data)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    work = tmp_path_factory.mktemp("kws")
    spec = KWSBenchSpec(**TINY)
    return run_kws_bench(_tiny_data(), spec, work), work, spec


def test_every_row_is_measured(bench):
    result, _, _ = bench
    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == list(ROWS)
    for r in rows.values():
        assert 0.0 <= r["accuracy"] <= 1.0 and r["size_kb"] > 0
        t = r["timing"]
        assert t["measured"] and t["float_ms"] > 0 and t["eager_ms"] > 0 and t["threads"] == 1
    assert rows["fastgrnn"]["timing"]["float_path"].startswith("TorchScript")
    assert rows["gru"]["timing"]["float_path"] == "torch nn.GRU (eager)"
    assert rows["edgeml_fastgrnn"]["timing"]["float_path"].startswith("EdgeML BaseRNN")
    edgeml = rows["edgeml_fastgrnn"]  # EdgeML's own forward and ours on the same weights
    assert abs(edgeml["accuracy"] - edgeml["our_forward_accuracy"]) <= 1 / 120
    assert rows["rnn"]["lr"] == 0.001 and rows["gru"]["config"]["d_hidden"] == 16
    lsq = rows["fastgrnn_lsq_q"]
    assert lsq["int_accuracy"] > 2 / 12  # it learned something (chance is 1/12)
    for name in ("fastgrnn_lsq_q", "edgeml_fastgrnn"):
        q = rows[name]
        assert q["c_bit_equal"] is True and q["c_checked_clips"] == 64
        assert q["timing"]["int_c_ms"] > 0 and q["timing"]["int_numpy_ms"] > 0
        assert q["int_float_agreement"] >= 0.8  # barely trained: many near-ties
        assert q["size_kb_q"] < q["size_kb"] / 3  # int8 and byte indices vs fp32
    kept = {s["name"]: s["kept"] / s["dense"] for s in lsq["sparsity"]}
    assert kept == pytest.approx(dict.fromkeys(kept, 0.5), abs=0.02) and len(kept) == 4
    assert lsq["size_kb_q"] < rows["fastgrnn"]["size_kb"] / 4 < rows["gru"]["size_kb"]


def test_markdown_has_the_table_and_verdict(bench):
    result, _, _ = bench
    md = to_markdown(result, {"cpu": "test"}, "prunekit bench kws")
    for label in ROWS.values():
        assert f"| {label} |" in md
    assert "smaller than the GRU" in md and "Target >= 30x smaller" in md
    assert "optimizer rebuilt to include the classifier layer" in md
    assert "every classifier starts at N(0, 1) (EdgeML's FastTrainer)" in md
    assert "Ours vs EdgeML's FastGRNN" in md and "Int/float agreement" in md


def test_finished_rows_are_reused(bench):
    result, work, spec = bench
    seen = []
    again = run_kws_bench(_tiny_data(), spec, work, on_row=lambda r, s: seen.append(s))
    assert seen == ["done before"] * len(ROWS)
    assert again["rows"] == json.loads(json.dumps(result["rows"]))
    other = KWSBenchSpec(**{**TINY, "hidden": 8})
    with pytest.raises(PrunekitError, match="was trained with other settings \\(hidden\\)"):
        run_kws_bench(_tiny_data(), other, work)


def test_rows_from_before_head_init_are_not_reused(bench, tmp_path):
    """A row trained when the classifier started at nn.Linear's default is refused, not reused."""
    _, work, spec = bench
    shutil.copytree(work / "rows", tmp_path / "rows")
    path = tmp_path / "rows" / "gru.json"
    old = json.loads(path.read_text())
    del old["config"]["head_init"]
    path.write_text(json.dumps(old))
    with pytest.raises(PrunekitError) as err:
        run_kws_bench(_tiny_data(), KWSBenchSpec(**{**TINY, "rows": ["gru"]}), tmp_path)
    assert str(err.value) == (
        f"{path} was trained before model.head_init existed (older prunekit): use another "
        "--work folder, or delete the row to train it again"
    )


def test_no_timing_then_timing_only_times_the_saved_models(tmp_path, capsys):
    base = ["bench", "kws", "--data", "tiny-test", "--work", str(tmp_path / "w"),
            "--set", "rows=fastgrnn_lsq_q,gru"] + [f"--set={k}={v}" for k, v in TINY.items()]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a"), "--no-timing"]) == 0
    first = json.loads((tmp_path / "a" / "kws.json").read_text())
    assert all(r["timing"] == {"measured": False} for r in first["rows"])
    assert "Timings: not measured in this run" in (tmp_path / "a" / "kws.md").read_text()
    assert main([*base, "--out", str(tmp_path / "b"), "--timing-only"]) == 0
    second = json.loads((tmp_path / "b" / "kws.json").read_text())
    for a, b in zip(first["rows"], second["rows"], strict=True):
        assert b["timing"]["measured"] and b["timing"]["float_ms"] > 0
        assert {k: v for k, v in a.items() if k != "timing"} == {
            k: v for k, v in b.items() if k != "timing"
        }
    assert second["rows"][0]["timing"]["int_c_ms"] > 0
    assert second["command"].endswith("--timing-only")
    code = main(
        [
            *base[:5],
            str(tmp_path / "none"),
            *base[6:],
            "--out",
            str(tmp_path / "c"),
            "--timing-only",
        ]
    )
    assert code == 2 and "has not been trained under" in capsys.readouterr().err


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    argv = ["bench", "kws", "--data", "tiny-test", "--out", str(tmp_path / "out"),
            "--work", str(tmp_path / "work"), "--set", "rows=gru,lstm"]  # fmt: skip
    argv += [f"--set={k}={v}" for k, v in TINY.items()]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "out" / "kws.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ["gru", "lstm"]
    assert saved["command"].startswith("prunekit bench kws --data tiny-test")
    assert "| GRU |" in (tmp_path / "out" / "kws.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "speech-v9"], "--data 'speech-v9' is not a known data provider: choose one of"),
        (["--set", "hiden=8"], "--set hiden=... is not a kws bench setting: choose from"),
        (["--set", "rows=gru,transformer"], "rows=['gru', 'transformer'] must be a non-empty list"),
        (["--set", "grad_clip=-1"], "grad_clip=-1 must be >= 0 (0 = no clipping)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = main(
        ["bench", "kws", "--out", str(tmp_path / "o"), "--work", str(tmp_path / "w"), *argv]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("prunekit bench: error: " + message)
    assert not (tmp_path / "o").exists()


def test_edgeml_trains_its_classifier_layer_with_the_patch(monkeypatch, tmp_path):
    from prunekit.bench.kws_edgeml import train_edgeml
    from prunekit.models.edgeml_ref import import_edgeml

    made = []
    edgeml = import_edgeml()

    class Spy(edgeml.FastTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.fc_start = self.FC.detach().clone()
            made.append(self)

    monkeypatch.setattr(edgeml, "FastTrainer", Spy)
    spec = KWSBenchSpec(**{**TINY, "epochs": 12, "rows": ("edgeml_fastgrnn",)})
    model, info = train_edgeml(spec, _tiny_data(), tmp_path)
    trainer = made[0]
    assert not torch.equal(trainer.FC.detach(), trainer.fc_start)  # as released it never moves
    assert torch.equal(model.head.weight, trainer.FC.detach().t())
    assert "optimizer rebuilt" in info["note"]


def test_edgeml_row_refuses_a_run_it_would_crash_on():
    spec = KWSBenchSpec(**{**TINY, "epochs": 2, "rows": ("edgeml_fastgrnn",)})
    with pytest.raises(PrunekitError, match="would never hard-threshold in 6 batches"):
        run_kws_bench(_tiny_data(), spec, "unused")


def test_data_provider_output_is_checked():
    d = _tiny_data()
    with pytest.raises(PrunekitError, match="test split has labels outside"):
        KWSData(d.train_x, d.train_y, d.dev_x, d.dev_y, d.test_x, d.test_y + 12, labels=d.labels)


def test_lm_row_trains_fastgrnn_and_lstm(tiny_corpus, tiny_recipe, tmp_path):
    recipe = tiny_recipe(tiny_corpus, steps=4, eval_every=4)
    recipe["model"] = {"arch": "fastgrnn", "d_embed": 16, "d_hidden": 16, "w_rank": 4, "u_rank": 4}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    argv = [
        "bench",
        "kws",
        "--lm",
        "--recipe",
        str(path),
        "--out",
        str(out),
        "--work",
        str(tmp_path / "w"),
    ]
    assert main(argv) == 0
    rows = {r["row"]: r for r in json.loads((out / "lm.json").read_text())["rows"]}
    assert rows["lstm"]["model"]["cell"] == "lstm" and rows["lstm"]["model"]["d_hidden"] == 16
    assert rows["fastgrnn"]["rnn_params"] < rows["lstm"]["rnn_params"]
    assert all(1 < r["test_ppl"] < 1000 for r in rows.values())
    assert "| fastgrnn |" in (out / "lm.md").read_text()
