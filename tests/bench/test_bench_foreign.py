"""`prunekit bench foreign` at toy sizes: every column, the Markdown table and the CLI."""

import json

from prunekit.bench import foreign
from prunekit.cli.main import main


def test_measure_gives_every_column():
    result = foreign.measure(
        ["lstm", "convgru"], methods=("structured", "factorized"), int8=False, threads=(1,),
        repeats=1, warmup=0, compact_repeats=2, tiny=True,
    )  # fmt: skip
    for r in result["models"]:
        rows, timing = r["rows"], r["timing"]["1"]
        assert list(rows) == ["dense", "structured", "factorized"] == list(timing)
        for name in ("structured", "factorized"):
            row = rows[name]
            assert row["max_diff"] < 1e-5 and row["round_trip_diff"] == 0.0
            assert row["params_stored"] <= row["params_counted"] < rows["dense"]["params_counted"]
            assert row["flop_ratio"] > 1.0 and timing[name]["speedup"] > 0
        assert timing["dense"]["speedup"] == 1.0
    md = foreign.to_markdown(result, {"cpu": "test"}, "prunekit bench foreign --tiny")
    assert "## lstm" in md and "## convgru" in md
    assert "| `structured` |" in md and "exact" in md


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    argv = [
        "bench", "foreign", "--tiny", "--models", "gpt2", "--methods", "structured",
        "--no-timing", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "foreign_tiny.json").read_text())
    rows = data["models"][0]["rows"]
    assert list(rows) == ["dense", "dense_eager", "structured", "structured+int8"]
    assert data["models"][0]["timing"] is None and "machine" in data
    md = (tmp_path / "foreign_tiny.md").read_text()
    assert "not measured" in md and data["command"].startswith("prunekit bench foreign")


def test_cli_bad_model_is_one_line_exit_2(tmp_path, capsys):
    code = main(["bench", "foreign", "--models", "gpt3", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].endswith("--models 'gpt3' has ['gpt3']: choose from gpt2,lstm,convgru,wav2vec2")
    assert not list(tmp_path.iterdir())
