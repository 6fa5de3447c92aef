"""`prunekit bench asr` on a tiny grid: LM cells through the paper grid, decode cells, tables."""

import json

import pytest

from prunekit.asr.load_lm import load_lm
from prunekit.bench import asr as asr_bench
from prunekit.cli.main import main
from prunekit.errors import PrunekitError

TINY_GRID = [
    "data.tokenizer=word", "data.vocab_size=300", "train.steps=10", "train.eval_every=5",
    "train.batch_size=4", "train.bptt=16", "train.threads=1", "paper.prune.steps=4",
    "paper.prune.frequency=2", "paper.checkpoint_every=2", "paper.prune.calibration_batches=2",
    "paper.sizes=[0.5]", "paper.seeded_sizes=[0.5]", "paper.methods=[unstructured,factorized]",
    "model.d_model=32", "model.d_ff=64",
]  # fmt: skip


def _argv(asr: str, out: str, *extra: str) -> list[str]:
    sets = [a for pair in TINY_GRID for a in ("--set", pair)]
    return ["bench", "asr", "--asr", asr, "--out", out, "--recipe", "paper_tiny", *sets,
            "--t5-sizes", "0.5", "--tune-utterances", "2", "--jobs", "1", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def bench(asr_run, tmp_path_factory):
    _, run = asr_run
    out = tmp_path_factory.mktemp("bench") / "b"
    assert main(_argv(str(run), str(out))) == 0
    return run, out


def test_every_table_cell_is_decoded(bench):
    run, out = bench
    plan = json.loads((out / "bench.json").read_text())
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("decode-*.json")}
    assert set(cells) == {c["id"] for c in plan["decode_cells"]} and len(cells) == 7
    refs = json.loads((out / "refs.json").read_text())
    for cid, c in cells.items():
        r = c["rates"]
        assert r["all"]["words"] == r["seen_voices"]["words"] + r["unseen_voices"]["words"]
        assert len(c["texts"]) == len(refs) == 4 and c["timing"]["threads"] == 1
        if cid != "decode-no-lm":
            assert c["timing"]["fused_lm_tokens"] > 0 and c["lm_facts"]["compact_bytes"] > 0
            assert c["tuning"]["best"] == c["params"] and c["tuning"]["grid"]
            assert load_lm(c["lm_facts"]["export"]).kind == "export"
    oneshot = json.loads((out / "grid" / "cells" / "oneshot-magnitude-unstructured-s50-seed0.json"
                          ).read_text())  # fmt: skip
    assert oneshot["step"] == 4  # fine-tuned as long as the incremental run
    grid = json.loads((out / "grid" / "grid.json").read_text())
    assert grid["recipe"]["data"]["text"] == "spoken"
    tables = (out / "tables.md").read_text()
    for heading in ("## Table 4", "## Table 5", "## Table 6", "## Decoding speed", "## Findings",
                    "## The dense NNLM's gain by acoustic difficulty"):  # fmt: skip
        assert heading in tables
    results = json.loads((out / "results.json").read_text())
    hard = results["difficulty"]
    assert sum(hard["utterances"]) == len(refs) and set(hard["systems"]) == {"no-lm", "baseline"}
    no_lm = cells["decode-no-lm"]["rates"]["all"]
    assert sum(g["errors"] for g in hard["systems"]["no-lm"]) == no_lm["word_errors"]
    assert {f["finding"] for f in results["findings"]} >= {
        "Incremental beats one-shot in WER at every size (Table 4)"
    }


def test_rerun_skips_and_report_rebuilds(bench, capsys):
    run, out = bench
    before = (out / "tables.md").read_text()
    assert main(_argv(str(run), str(out), "--no-report")) == 0
    assert "decoded 0 cell(s), skipped 7 finished" in capsys.readouterr().out
    (out / "tables.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "tables.md").read_text().split("## Table 4")[1] == before.split("## Table 4")[1]
    assert main(_argv(str(run), str(out), "--dry-run")) == 0
    listing = capsys.readouterr().out
    assert "decode-baseline" in listing and " todo " not in listing


def test_bad_input(bench, tmp_path, capsys, monkeypatch):
    run, out = bench
    assert main(_argv(str(tmp_path), str(tmp_path / "o"))) == 2
    assert capsys.readouterr().err.strip() == (
        f"prunekit bench: error: {tmp_path} is not a finished `prunekit asr` run (no "
        f"metrics.json): run `prunekit asr --out {tmp_path}` first (or pass --asr with its folder)"
    )
    assert main(_argv(str(run), str(out), "--set", "data.corpus=web-bible")) == 2
    assert "the LMs must learn the text the speech was made from" in capsys.readouterr().err
    args = asr_bench.BenchArgs(asr=str(run), out=str(out), recipe="paper_tiny",
                               overrides=dict(p.split("=") for p in TINY_GRID[:1]))  # fmt: skip
    opened = asr_bench.open_bench(args)
    monkeypatch.setattr(opened.grid, "result", lambda cid: {"step": 0})
    monkeypatch.setattr(opened.grid, "cell_json", lambda cid: out / "bench.json")
    with pytest.raises(PrunekitError, match="is training-free one-shot pruning"):
        asr_bench.check_oneshot_trained(opened)


def test_cells_from_other_decoding_settings_are_refused(bench, tmp_path, capsys):
    run, out = bench
    other = tmp_path / "b"
    other.mkdir()
    for name in ("bench.json", "refs.json"):
        (other / name).write_text((out / name).read_text())
    (other / "cells").mkdir()
    cell = out / "cells" / "decode-no-lm.json"
    (other / "cells" / cell.name).write_text(cell.read_text())
    manifest = json.loads((other / "bench.json").read_text())
    beam = manifest["decode"]["beam_width"]
    manifest["decode"]["beam_width"] = beam + 1
    (other / "bench.json").write_text(json.dumps(manifest))
    assert main(_argv(str(run), str(other), "--cells", "decode-no-lm")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"prunekit bench: error: {other} holds cells decoded with decode.beam_width={beam + 1}, "
        f"the --asr run now says {beam}: use another --out, or delete {other / 'cells'} to "
        "decode again"
    )
    manifest["decode"]["beam_width"] = beam
    manifest["asr"] = str(tmp_path / "elsewhere")
    (other / "bench.json").write_text(json.dumps(manifest))
    assert main(_argv(str(run), str(other), "--cells", "decode-no-lm")) == 2
    assert f"holds cells decoded from {tmp_path / 'elsewhere'}, not" in capsys.readouterr().err
