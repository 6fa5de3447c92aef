"""Running the paper grid on a tiny recipe: cell JSONs written, finished cells skipped, a killed
cell resumed from its checkpoint, the report rebuilt."""

import json
import re
import shutil

import pytest
import yaml

from prunekit.bench import paper as paper_bench
from prunekit.bench.paper_cells import plan_cells, select
from prunekit.bench.paper_spec import load_paper_recipe
from prunekit.cli.main import main
from prunekit.train.trainer import Trainer

ONESHOT = "oneshot-magnitude-unstructured-s50-seed0"
CELLS = f"{ONESHOT},incremental-taylor-unstructured-s50-seed0,finetune-{ONESHOT}"
KILLED = "layer-ffn-seed0"


@pytest.fixture(scope="module")
def recipe(tiny_corpus, tiny_recipe, tmp_path_factory):
    raw = tiny_recipe(tiny_corpus, steps=8, eval_every=4)
    raw["paper"] = {
        "checkpoint_every": 2,
        "prune": {"steps": 6, "frequency": 2, "calibration_batches": 2},
        "fig2": {"epochs": 1, "epoch_steps": 4},
        "fig3": {"evals": 3},
        "latency": {"context": 4, "steps": 4, "repeats": 2},
    }
    path = tmp_path_factory.mktemp("recipe") / "paper_test.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bench(out, recipe, *more):
    return main(["bench", "paper", "--recipe", str(recipe), "--out", str(out), *more])


@pytest.fixture(scope="module")
def grid(recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "g"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TQDM_DISABLE", "1")
        assert _bench(out, recipe, "--cells", CELLS) == 0
    return out


def test_cells_written_then_skipped(grid, recipe, capsys):
    names = sorted(p.stem for p in (grid / "cells").glob("*.json"))
    assert names == sorted(["baseline", *CELLS.split(",")])
    cell = json.loads(
        (grid / "cells" / "incremental-taylor-unstructured-s50-seed0.json").read_text()
    )
    assert cell["tables"] == ["table2", "table3"] and cell["seed"] == 0
    assert cell["effective_params"] <= 0.5 * cell["baseline_params"]
    assert cell["valid_ppl"] > 1 and cell["flop_speedup"] > 1
    assert cell["git_commit"] and cell["machine"]["cpu"]
    assert cell["command"].startswith("prunekit bench paper --recipe ")
    assert (grid / "tables.md").is_file() and (grid / "fig3_layers.png").is_file()
    oneshot = json.loads((grid / "cells" / f"{ONESHOT}.json").read_text())
    assert oneshot["step"] == 0 and oneshot["settings"]["prune"]["steps"] == 6  # training-free
    tuned = json.loads((grid / "cells" / f"finetune-{ONESHOT}.json").read_text())
    assert tuned["curve"][0] == [0.0, oneshot["valid_ppl"]] and tuned["curve"][1][0] == 1.0
    assert tuned["steps"] == 4 and tuned["curve_x"] == "epoch"
    assert all(  # each cell was timed as soon as it finished
        json.loads((grid / "cells" / f"{c}.json").read_text())["decode_ms_per_token"] > 0
        for c in ["baseline", *CELLS.split(",")]
    )
    base = json.loads((grid / "cells" / "baseline.json").read_text())
    assert len(base["weights_sha256"]) == 64 and len(base["tokenizer_sha256"]) == 64
    assert (grid / "baseline" / "model.safetensors").is_file()

    stamps = {p.name: p.stat().st_mtime_ns for p in (grid / "cells").glob("*.json")}
    capsys.readouterr()
    assert _bench(grid, recipe, "--cells", CELLS) == 0
    assert "ran 0 cell(s), skipped 4 finished" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (grid / "cells").glob("*.json")} == stamps


def test_killed_cell_resumes_from_its_checkpoint(grid, recipe, monkeypatch):
    train_step = Trainer.train_step

    def dying(self):  # killed after the step-4 checkpoint
        if self.out_dir.name == KILLED and self.step == 5:
            raise RuntimeError("killed")
        return train_step(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(RuntimeError, match="killed"):
        _bench(grid, recipe, "--cells", KILLED)
    assert not (grid / "cells" / f"{KILLED}.json").exists()
    assert not (grid / ".lock").exists()
    cfg, paper = load_paper_recipe(str(recipe))
    g = paper_bench.open_grid(cfg, paper, grid)
    rows = {r["id"]: r for r in paper_bench.describe(g, select(plan_cells(paper), KILLED))}
    assert rows[KILLED]["status"] == "partial" and rows[KILLED]["steps_done"] == 4
    assert rows["baseline"]["status"] == "done"

    monkeypatch.setattr(Trainer, "train_step", train_step)
    resumed = []
    resume = Trainer.resume
    monkeypatch.setattr(
        Trainer, "resume", lambda self, p: (resume(self, p), resumed.append(self.step))
    )
    assert _bench(grid, recipe, "--cells", KILLED) == 0
    assert resumed == [4]
    layer = json.loads((grid / "cells" / f"{KILLED}.json").read_text())
    assert layer["steps"] == 6 and [x for x, _ in layer["curve"]] == [0, 2, 4, 6]
    assert abs(layer["group_sparsity"] - 0.75) < 0.01


def test_latency_fills_optional_fields(grid, recipe):
    pytest.importorskip("prunekit.bench.latency")
    sets = ["--set", "paper.latency.context=4", "--set", "paper.latency.steps=4"]
    sets += ["--set", "paper.latency.repeats=2"]
    assert _bench(grid, recipe, "--latency", "--remeasure", "--cells", CELLS, *sets) == 0
    base = json.loads((grid / "cells" / "baseline.json").read_text())
    cell = json.loads(
        (grid / "cells" / "oneshot-magnitude-unstructured-s50-seed0.json").read_text()
    )
    assert base["speedup_vs_dense"] == 1.0 and cell["decode_ms_per_token"] > 0
    assert cell["latency"]["backend"] and cell["speedup_vs_dense"] > 0
    table1 = (grid / "tables.md").read_text().split("## Table 1")[1].split("## Table 2")[0]
    assert re.search(r"\) / \d+\.\d\d× \|", table1)  # the measured speed-up is shown


def _next_sitting(grid, tmp_path):
    """A copy of the grid as a later sitting finds it: results and portable baseline, no runs/."""
    out = tmp_path / "g"
    shutil.copytree(grid, out, ignore=shutil.ignore_patterns("runs", ".lock"))
    return out


def test_next_sitting_reruns_a_lost_source_from_the_portable_baseline(grid, recipe, tmp_path):
    out = _next_sitting(grid, tmp_path)
    (out / "cells" / f"finetune-{ONESHOT}.json").unlink()
    before = json.loads((out / "cells" / f"{ONESHOT}.json").read_text())
    assert _bench(out, recipe, "--cells", f"finetune-{ONESHOT}") == 0
    again = json.loads((out / "cells" / f"{ONESHOT}.json").read_text())
    assert again["finished_at"] >= before["finished_at"] and (out / "runs" / ONESHOT).is_dir()
    assert again["valid_ppl"] == pytest.approx(before["valid_ppl"], rel=1e-6)  # same baseline
    assert (out / "cells" / f"finetune-{ONESHOT}.json").is_file()
    assert not (out / "runs" / "baseline").exists()


def test_next_sitting_refuses_a_changed_or_missing_baseline(grid, recipe, tmp_path, capsys):
    out = _next_sitting(grid, tmp_path)
    weights = out / "baseline" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    code = _bench(out, recipe, "--cells", "incremental-magnitude-unstructured-s50-seed0")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sha256 differs" in err[0]
    shutil.rmtree(out / "baseline")
    code = _bench(out, recipe, "--cells", "incremental-magnitude-unstructured-s50-seed0")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no weights" in err[0]
    assert not (out / "cells" / "incremental-magnitude-unstructured-s50-seed0.json").exists()


def test_other_settings_are_refused(grid, recipe, capsys):
    for override in ("data.vocab_size=400", "paper.prune.steps=7"):
        code = _bench(grid, recipe, "--set", override, "--cells", "baseline")
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "pass another --out" in err[0]
    assert _bench(grid, recipe, "--set", "train.threads=2", "--cells", "baseline") == 0


def test_dry_run_lists_every_cell(recipe, tmp_path, capsys):
    assert _bench(tmp_path / "g", recipe, "--dry-run") == 0
    text = capsys.readouterr().out
    assert "55 cells (0 done, 0 partial, 55 todo)" in text
    assert "finetune-incremental-magnitude-unstructured-s5-seed0" in text
    assert not (tmp_path / "g" / "cells").exists()


def test_unreachable_size_fails_before_training(recipe, tmp_path, capsys):
    code = _bench(tmp_path / "g", recipe, "--set", "paper.sizes=[0.0001]", "--cells", "scratch-*")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cell scratch-s0.01-seed0" in err[0]
    assert not (tmp_path / "g" / "runs").exists()
