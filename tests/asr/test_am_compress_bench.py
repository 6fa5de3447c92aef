"""`prunekit bench am-compress` on stand-in speech: every cell runs once and is read back, the
dry run, cell locks, the report and its computed verdicts, the trained streaming variants."""

import json
import os
import subprocess
import sys

import pytest
import torch
from am_tiny import tiny_feats, tiny_spec

from prunekit.bench.am_cells import cell_status, plan_am_cells, select
from prunekit.bench.am_compress import claim, open_grid, run_am_grid
from prunekit.bench.am_dry_run import describe, format_plan
from prunekit.bench.am_latency import _load, checkpoints, run_trained_stream, trained_markdown
from prunekit.bench.am_report import build_am_report, schedule_lines
from prunekit.bench.am_spec import load_am_spec, parse_am_spec
from prunekit.bench.am_verdicts import (
    front_verdict,
    larger_sparse_verdict,
    sparse_vs_dense_verdict,
    training_time_verdict,
    untrained,
)
from prunekit.cli.main import main
from prunekit.errors import PrunekitError


def _spec():
    raw = tiny_spec()
    raw["lowrank"][0]["lambda_rec"] = 1e-3  # one trace-norm point, one l2 point, one short
    return parse_am_spec(raw)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = tmp_path_factory.mktemp("am_work")
    spec = _spec()
    grid = open_grid(spec, tiny_feats(), work, "prunekit bench am-compress (test)")
    seen = []
    summary = run_am_grid(grid, on_cell=lambda c, s: seen.append((c.id, s)))
    return spec, grid, summary, seen


def _rows(grid, cell_id):
    return json.loads((grid.work / "cells" / f"{cell_id}.json").read_text())["rows"]


def test_every_cell_runs_once_with_honest_rows(finished):
    spec, grid, summary, seen = finished
    ids = [c.id for c in plan_am_cells(spec)]
    assert summary["ran"] == ids and [s for _, s in seen] == ["todo"] * len(ids)
    assert ids[0] == "dense-h16"  # the swept width's dense model first (calibrates the cost)
    dense = _rows(grid, "dense-h16")[0]
    assert dense["params"] == dense["dense_params"] and dense["test_cer"] >= 0
    narang = _rows(grid, "narang-h16")[0]
    assert narang["sparsity"] > 0.5 and narang["params"] < 0.6 * dense["params"]
    cubic = _rows(grid, "cubic-magnitude-h16")[0]
    assert cubic["sparsity"] == pytest.approx(narang["sparsity"], abs=0.03)
    structured = _rows(grid, "structured-h16")[0]
    assert structured["params"] < dense["params"] and structured["variant"] == "structured-h16"
    for cell in ("lowrank-tn", "lowrank-l2", "lowrank-tn-short"):
        rows = _rows(grid, cell)
        assert [r["threshold"] for r in rows] == [0.6, 0.95]
        assert all(r["params"] <= r["dense_params"] == dense["params"] for r in rows)
        assert all(r["test_cer"] is not None and "test_unseen_cer" in r for r in rows)
    assert _rows(grid, "lowrank-tn-short")[0]["stage1_steps"] == 4
    again = run_am_grid(grid)  # finished cells are read back, nothing trains
    assert again["ran"] == [] and again["skipped"] == ids


def test_dry_run_lists_status_and_cost(finished, tmp_path):
    spec, grid, _, _ = finished
    fresh = open_grid(spec, tiny_feats(), tmp_path, "x")
    rows = describe(fresh)
    assert {r["status"] for r in rows} == {"todo"} and all(r["seconds_left"] > 0 for r in rows)
    h8, h16 = (next(r for r in rows if r["id"] == f"dense-h{w}") for w in (8, 16))
    assert h8["estimate_seconds"] < h16["estimate_seconds"]  # cost follows FLOPs per frame
    assert f"{len(rows)} cells (0 done, 0 partial, {len(rows)} todo)" in format_plan(rows)
    done = describe(grid)
    assert {r["status"] for r in done} == {"done"} and sum(r["seconds_left"] for r in done) == 0
    picked = [c.id for c in select(plan_am_cells(spec), "cubic-*")]
    assert picked == ["dense-h16", "narang-h16", "cubic-magnitude-h16"]  # dependencies added


def test_a_folder_refuses_other_settings(finished):
    spec, grid, _, _ = finished
    raw = tiny_spec()
    raw["am"]["max_frames"] = 500
    other = open_grid(parse_am_spec(raw), tiny_feats(), grid.work, "x")
    with pytest.raises(PrunekitError, match="other `am` settings"):
        run_am_grid(other, "dense-h8")


def test_a_finished_lowrank_cell_of_other_section_settings_is_refused(finished):
    spec, grid, _, _ = finished
    raw = tiny_spec()
    raw["lowrank"][0]["lambda_rec"] = 1e-3
    raw["lowrank"][0]["warm_steps"] = 2  # same cell id, other stage-1 training
    other = open_grid(parse_am_spec(raw), tiny_feats(), grid.work, "x")
    with pytest.raises(PrunekitError, match="other lowrank settings.*delete it"):
        run_am_grid(other, "lowrank-tn")
    assert cell_status(grid.work, plan_am_cells(spec)[-1])[0] == "done"  # its own settings: fine


def test_cell_lock_held_by_a_live_process_is_respected(tmp_path):
    cell = plan_am_cells(_spec())[0]
    lock = tmp_path / "locks" / f"{cell.id}.lock"
    lock.parent.mkdir()
    lock.write_text(str(os.getppid()))  # alive
    with claim(tmp_path, cell) as mine:
        assert not mine
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(str(dead.pid))  # a killed run's lock is taken over
    with claim(tmp_path, cell) as mine:
        assert mine and lock.read_text() == str(os.getpid())
    assert not lock.exists()
    assert cell_status(tmp_path, cell) == ("todo", 0)


def test_report_has_tables_plots_and_verdicts(finished, tmp_path):
    spec, grid, _, _ = finished
    paths = build_am_report(grid.work, tmp_path, spec, command="cmd", machine={"cpu": "c"})
    text = paths["markdown"].read_text()
    for part in (
        "## Verdicts",
        "Trace norm vs l2",
        "Narang's table",
        "narang-h16",
        "cubic-magnitude-h16",
        "structured-h16",
        "tracenorm (short stage 1)",
        "mean nu",
        "Cells trained by: `prunekit bench am-compress (test)` at ",
    ):
        assert part in text
    assert (tmp_path / "pareto_cer.png").stat().st_size > 0
    steps = spec.am.train.steps
    assert f"- tn: stage 1 = {steps} factored steps with the tracenorm regularizer" in text
    assert f"- l2: stage 1 = {steps} plain steps with the l2 regularizer" in text
    warm = parse_am_spec(
        {**tiny_spec(), "lowrank": [{**tiny_spec()["lowrank"][0], "warm_steps": 2}]}
    )
    assert f"stage 1 = 2 plain warm-start steps, then {steps - 2} factored" in "\n".join(
        schedule_lines(warm)
    )
    result = json.loads(paths["results"].read_text())
    assert len(result["verdicts"]) == 5 and {"tracenorm", "l2", "short"} <= set(result["rows"])


def _row(params, cer, dense=1000, **kw):
    return {"params": params, "dense_params": dense, "test_cer": cer, **kw}


def test_front_verdict_counts_budgets_both_ways():
    tn = [_row(100, 0.30), _row(300, 0.25), _row(600, 0.20)]
    l2 = [_row(100, 0.40), _row(300, 0.35), _row(600, 0.21)]
    assert front_verdict(tn, l2)["verdict"] == "supported"
    assert front_verdict(l2, tn)["verdict"] == "contradicted"
    assert front_verdict(tn, tn)["verdict"] == "not shown"
    assert front_verdict(tn, [])["verdict"] == "not run"
    claims = untrained([front_verdict(tn, l2)], dense_error=0.95, limit=0.8)
    assert claims[0]["verdict"] == "not shown" and "did not learn" in claims[0]["evidence"]


def test_training_time_and_narang_verdicts():
    full = [_row(200, 0.30, threshold=0.8, stage1_steps=100, stage2_steps=20)]
    short = [_row(190, 0.30, threshold=0.8, stage1_steps=25, stage2_steps=40)]
    assert training_time_verdict(short, full)["verdict"] == "supported"
    worse = [{**short[0], "test_cer": 0.40}]
    assert training_time_verdict(worse, full)["verdict"] == "contradicted"
    dense = {"test_cer": 0.20, "width": 128, "params": 1000}
    sparse = {"test_cer": 0.205, "width": 128, "sparsity": 0.9, "params": 110}
    assert sparse_vs_dense_verdict(sparse, dense)["verdict"] == "supported"
    assert sparse_vs_dense_verdict({**sparse, "test_cer": 0.3}, dense)["verdict"] == "contradicted"
    small = {"test_cer": 0.35, "width": 64, "params": 120}
    big = {"test_cer": 0.30, "width": 256, "params": 110}
    assert larger_sparse_verdict([big], [small, dense])["verdict"] == "supported"
    assert larger_sparse_verdict([{**big, "test_cer": 0.5}], [small])["verdict"] == "contradicted"


def test_trained_variants_stream_what_was_trained(finished):
    _, grid, _, _ = finished
    result = run_trained_stream(grid.work, frames=8, repeats=2)
    by = result["stream"]["by_threads"]["1"]
    for name in (
        "dense-h16",
        "dense-h8",
        "floor",
        "int8",
        "torch-int8",
        "narang-h16",
        "narang-h16+int8",
        "structured-h16",
        "cubic-magnitude-h16",
    ):
        assert by[name]["median_ms"] > 0, name
    assert any(n.startswith("lowrank:") and n.endswith("+int8") for n in by)
    targets = [t["target"] for t in result["targets"]]
    assert any("never slower than dense-h16" in t for t in targets)
    assert any("0.8 x FLOP ratio" in t and t.startswith("structured-h16") for t in targets)
    assert any("10x the fastest dense path" in t for t in targets)
    assert "| target |" in trained_markdown(result, {}, "cmd")
    # the compact low-rank model streams what its factored checkpoint computes
    name, (path, _) = next((n, v) for n, v in checkpoints(grid.work).items() if ":" in n)
    from prunekit.bench.am_latency import build_trained_variants

    variants, _, _ = build_trained_variants(grid.work, repeats=2)
    model, small = _load(path), variants[name]
    feats = torch.randn(1, 40, 16)
    with torch.no_grad():
        want, _ = model(feats, torch.tensor([40]))
        state, outs = small.init_stream(1), []
        for i in range(40):
            out, state = small.step(feats[:, i : i + 1], state)
            outs.append(out)
        out, state = small.step(feats[:, :0], state, final=True)
        outs.append(out)
    assert torch.allclose(torch.cat(outs, 1), want, atol=1e-4)


def test_spec_errors_name_the_fix(tmp_path):
    raw = tiny_spec(sparse_widths=[32])
    with pytest.raises(PrunekitError, match="dense_widths"):
        parse_am_spec(raw)
    with pytest.raises(PrunekitError, match="not known"):
        parse_am_spec(tiny_spec(), {"bench.nope": 1})
    with pytest.raises(PrunekitError, match="set it to 'ctc'"):
        parse_am_spec(tiny_spec(), {"am.model.arch": "rnn"})
    with pytest.raises(PrunekitError, match="do not exist"):
        load_am_spec(tmp_path / "missing.yaml")
    spec = load_am_spec(None)  # the built-in settings are valid
    assert spec.bench.sparse_widths and spec.lowrank


def test_cli_errors(capsys):
    assert main(["bench", "stream", "--model", "stack", "--trained", "x"]) == 2
    assert "--model ctc" in capsys.readouterr().err
    assert main(["bench", "am-compress", "--set", "bench.nope=1", "--dry-run"]) == 2
    assert "not known" in capsys.readouterr().err


def test_a_killed_cell_is_partial_and_resumes_to_the_same_row(finished, tmp_path, monkeypatch):
    import prunekit.pipelines.asr as asr_pipeline
    from prunekit.train.trainer import Trainer

    spec, grid, _, _ = finished

    class Killed(RuntimeError):
        pass

    class KillingTrainer(Trainer):
        def train_step(self):
            if self.step == 5:
                raise Killed("killed")
            return super().train_step()

    other = open_grid(spec, tiny_feats(), tmp_path, "x")
    monkeypatch.setattr(asr_pipeline, "Trainer", KillingTrainer)
    with pytest.raises(Killed):
        run_am_grid(other, "dense-h16")
    cell = plan_am_cells(spec)[0]
    assert cell_status(tmp_path, cell) == ("partial", 4)  # checkpoint_every: 2
    assert not (tmp_path / "locks" / "dense-h16.lock").exists()
    monkeypatch.setattr(asr_pipeline, "Trainer", Trainer)
    assert run_am_grid(other, "dense-h16")["ran"] == ["dense-h16"]
    keys = ("valid_loss", "test_cer", "test_wer", "params", "steps")
    resumed, straight = _rows(other, "dense-h16")[0], _rows(grid, "dense-h16")[0]
    assert {k: resumed[k] for k in keys} == {k: straight[k] for k in keys}
