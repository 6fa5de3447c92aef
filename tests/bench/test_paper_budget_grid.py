"""The second pass on a tiny grid made without it: the budget axis and one-shot + training only
add cells (finished ones untouched), Fig. 2 extends from its checkpoints to the curve a longer run
gives, and a source lost with runs/ is rebuilt without rewriting its record."""

import json
import shutil

import pytest
import yaml

from prunekit.bench import paper as paper_bench
from prunekit.bench.paper_cells import plan_cells
from prunekit.bench.paper_spec import load_paper_recipe
from prunekit.cli.main import main
from prunekit.train.trainer import Trainer

ONESHOT = "oneshot-magnitude-unstructured-s50-seed0"
FINETUNE = f"finetune-{ONESHOT}"
OLD = f"incremental-taylor-unstructured-s50-seed0,scratch-s50-seed0,{FINETUNE}"
NEW = [
    "incremental-taylor-unstructured-s50-p12-seed0",
    "scratch-s50-plus6-seed0",
    "scratch-s50-plus12-seed0",
    "oneshot-magnitude-unstructured-s50-p6-seed0",
]
SECOND = ["--set", "paper.budget.enabled=true", "--set", "paper.t1_finetuned=true"]


@pytest.fixture(scope="module")
def recipe(tiny_corpus, tiny_recipe, tmp_path_factory):
    raw = tiny_recipe(tiny_corpus, steps=8, eval_every=4)
    raw["paper"] = {
        "sizes": [0.5],
        "seeds": [0],
        "checkpoint_every": 2,
        "prune": {"steps": 6, "frequency": 2, "calibration_batches": 2},
        "fig2": {"epochs": 1, "epoch_steps": 4},
        "fig3": {"enabled": False},
        "latency": {"each_cell": False},
        "budget": {"sizes": [0.5], "steps": [6, 12], "methods": ["unstructured"]},
    }
    path = tmp_path_factory.mktemp("recipe") / "paper_budget.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bench(out, recipe, *more):
    return main(["bench", "paper", "--recipe", str(recipe), "--out", str(out), *more])


def _stamps(folder):
    return {p.name: p.read_bytes() for p in (folder / "cells").glob("*.json")}


@pytest.fixture(scope="module")
def grid(recipe, tmp_path_factory):
    """A grid as the first pass left it: its grid.json has none of the second pass's keys."""
    out = tmp_path_factory.mktemp("grid") / "g"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TQDM_DISABLE", "1")
        assert _bench(out, recipe, "--cells", OLD, "--no-report") == 0
    manifest = json.loads((out / "grid.json").read_text())
    for key in ("budget", "t1_finetuned"):
        del manifest["paper"][key]
    for key in ("extra_epochs", "extra_lr"):
        del manifest["paper"]["fig2"][key]
    (out / "grid.json").write_text(json.dumps(manifest))
    return out


def _copy(grid, tmp_path, runs=True):
    out = tmp_path / "g"
    skip = [".lock"] if runs else [".lock", "runs"]
    shutil.copytree(grid, out, ignore=shutil.ignore_patterns(*skip))
    return out


def test_adding_the_axes_only_adds_todo_cells(grid, recipe, tmp_path):
    out = _copy(grid, tmp_path)
    before = _stamps(out)
    cfg, paper = load_paper_recipe(
        str(recipe), {"paper.budget.enabled": True, "paper.t1_finetuned": True}
    )
    rows = {
        r["id"]: r
        for r in paper_bench.describe(paper_bench.open_grid(cfg, paper, out), plan_cells(paper))
    }
    assert {i for i, r in rows.items() if r["status"] == "done"} == {p[:-5] for p in before}
    assert {i for i, r in rows.items() if r["status"] == "todo"} >= set(NEW)
    assert rows["scratch-s50-plus12-seed0"]["steps"] == 8 + 12 and rows[NEW[0]]["steps"] == 12
    assert "budget" in rows["incremental-taylor-unstructured-s50-seed0"]["tables"]

    assert _bench(out, recipe, *SECOND, "--cells", ",".join(NEW)) == 0
    after = _stamps(out)
    assert {k: after[k] for k in before} == before  # finished cells untouched
    cell = json.loads((out / "cells" / f"{NEW[0]}.json").read_text())
    assert (cell["budget_steps"], cell["step"], cell["settings"]["prune"]["steps"]) == (12, 12, 12)
    assert cell["resumed_from_step"] == 0 and cell["cpu_seconds_last_call"] > 0
    scratch = json.loads((out / "cells" / "scratch-s50-plus12-seed0.json").read_text())
    assert scratch["steps"] == 20 and scratch["settings"]["train_steps"] == 20
    tuned = json.loads((out / "cells" / f"{NEW[3]}.json").read_text())
    assert tuned["schedule"] == "one-shot" and tuned["step"] == 6  # one-shot, then 6 steps

    md = (out / "tables.md").read_text()
    budget = md.split("## Pruning budget")[1].split("## Fig. 2")[0]
    ppl = {c: json.loads((out / "cells" / f"{c}.json").read_text())["valid_ppl"]
           for c in ("scratch-s50-seed0", "scratch-s50-plus12-seed0", NEW[0])}  # fmt: skip
    row = next(x for x in budget.splitlines() if "| 12 |" in x)
    vs_scratch = 100 * (ppl[NEW[0]] / ppl["scratch-s50-seed0"] - 1)
    vs_matched = 100 * (ppl[NEW[0]] / ppl["scratch-s50-plus12-seed0"] - 1)
    assert f"| {ppl[NEW[0]]:.2f} | {vs_scratch:+.1f} | {vs_matched:+.1f} |" in row
    assert (out / "budget.png").read_bytes()[:4] == b"\x89PNG"
    table1 = md.split("## Table 1")[1].split("## Table 2")[0]
    assert "One-shot + 6 steps" in table1 and f"| {tuned['valid_ppl']:.2f} |" in table1


def test_fig2_extends_from_its_checkpoint_to_what_a_longer_run_gives(
    grid, recipe, tmp_path, monkeypatch
):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    old = json.loads((grid / "cells" / f"{FINETUNE}.json").read_text())
    out = _copy(grid, tmp_path / "a")
    resumed = []
    resume = Trainer.resume
    monkeypatch.setattr(
        Trainer, "resume", lambda self, p: (resume(self, p), resumed.append(self.step))
    )
    longer = ["--set", "paper.fig2.extra_epochs=2"]
    assert _bench(out, recipe, *longer, "--cells", FINETUNE, "--no-report") == 0
    assert resumed and set(resumed) == {4}  # from the finished cell's own checkpoint
    new = json.loads((out / "cells" / f"{FINETUNE}.json").read_text())
    assert new["steps"] == 12 and new["epochs"] == 3 and new["resumed_from_step"] == 4
    assert [x for x, _ in new["curve"]] == [0, 1, 2, 3] and new["curve"][:2] == old["curve"]
    assert [p["decay"] for p in new["lr_phases"]] == ["cosine", "constant"]
    assert new["lr_phases"][1]["lr"] == pytest.approx(1e-3 * 0.1)  # where the cosine ended

    fresh = _copy(grid, tmp_path / "b")
    (fresh / "cells" / f"{FINETUNE}.json").unlink()
    shutil.rmtree(fresh / "runs" / FINETUNE)
    assert _bench(fresh, recipe, *longer, "--cells", FINETUNE, "--no-report") == 0
    again = json.loads((fresh / "cells" / f"{FINETUNE}.json").read_text())
    assert [y for _, y in again["curve"]] == pytest.approx([y for _, y in new["curve"]], rel=1e-6)


def test_a_lost_source_is_rebuilt_without_rewriting_its_record(grid, recipe, tmp_path, capsys):
    out = _copy(grid, tmp_path, runs=False)
    source = (out / "cells" / f"{ONESHOT}.json").read_bytes()
    code = _bench(out, recipe, "--set", "paper.fig2.epochs=3", "--cells", FINETUNE)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "paper.fig2.extra_epochs" in err[0]
    cfg, paper = load_paper_recipe(str(recipe), {"paper.fig2.extra_epochs": 1})
    g = paper_bench.open_grid(cfg, paper, out)
    (row,) = [r for r in paper_bench.describe(g, plan_cells(paper)) if r["id"] == FINETUNE]
    assert (row["status"], row["steps_done"], row["steps"]) == ("extend", 0, 8)
    assert row["seconds_left"] > row["estimate_seconds"]  # its lost source runs first
    assert _bench(out, recipe, "--set", "paper.fig2.extra_epochs=1", "--cells", FINETUNE) == 0
    assert (out / "cells" / f"{ONESHOT}.json").read_bytes() == source
    cell = json.loads((out / "cells" / f"{FINETUNE}.json").read_text())
    regen = cell["regenerated_sources"][ONESHOT]
    assert regen["valid_ppl"] == pytest.approx(regen["recorded_valid_ppl"], rel=1e-6)
    assert cell["epochs"] == 2 and cell["resumed_from_step"] == 0
    assert "ran 1 cell(s)" in capsys.readouterr().out
