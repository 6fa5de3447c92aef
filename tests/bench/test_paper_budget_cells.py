"""The second-pass cells (budget axis, one-shot + training, longer Fig. 2) join a grid without
renaming or re-running any cell it has: checked on the plan and on the committed grid."""

import json
from pathlib import Path

import pytest

from prunekit.bench.paper import _settings
from prunekit.bench.paper_cells import Cell, cell_status, cell_steps, plan_cells
from prunekit.bench.paper_spec import load_paper_recipe, parse_paper
from prunekit.errors import PrunekitError

COMMITTED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "paper"
PRUNE = {"prune": {"steps": 500}}  # as paper.yaml: the budget point at 500 is Tables 1-3's
SECOND_PASS = {**PRUNE, "budget": {"enabled": True}, "t1_finetuned": True}


def test_new_axes_only_add_cells_after_the_existing_ones():
    before = plan_cells(parse_paper(PRUNE))
    after = plan_cells(parse_paper(SECOND_PASS))
    ids = [c.id for c in after]
    assert ids[: len(before)] == [c.id for c in before] and len(set(ids)) == len(ids)
    for old, new in zip(before, after, strict=False):
        spec_old, spec_new = old.spec(), new.spec()
        assert set(spec_old["tables"]) <= set(spec_new.pop("tables"))
        spec_old.pop("tables")
        assert spec_new == spec_old  # same computation: no budget_steps on an existing cell
        assert (new.steps, new.depends) == (None, old.depends)
    added = after[len(before) :]
    # Table 1: 4 sizes + 2 seeds at 10 %; budget: per seeded combo (3 at 10 %, 1 at 5 %)
    # 2 methods x 3 budgets besides 500, and 4 compute-matched from-scratch models
    assert len(added) == 6 + 4 * (2 * 3 + 4)
    assert {c.kind for c in added} == {"prune", "scratch"}
    by_id = {c.id: c for c in after}
    assert "budget" in by_id["incremental-taylor-unstructured-s10-seed1"].tables  # N = 500
    assert "budget" in by_id["scratch-s5-seed0"].tables  # Table 3's model is the reference
    cell = by_id["incremental-taylor-factorized-s5-p4000-seed0"]
    assert (cell.steps, cell.method, cell.spec()["budget_steps"]) == (4000, "factorized", 4000)
    assert "incremental-taylor-factorized-s5-p4000-seed1" not in by_id  # seeds only at 10 %
    assert by_id["scratch-s10-plus2000-seed2"].steps == 2000
    tuned = by_id["oneshot-magnitude-unstructured-s25-p500-seed0"]
    assert (tuned.schedule, tuned.steps, tuned.tables) == ("one-shot", 500, ("table1",))


def test_steps_of_the_new_cells():
    cfg, paper = load_paper_recipe("paper", {"paper.fig2.extra_epochs": 27})
    by_id = {c.id: c for c in plan_cells(paper)}

    def steps(cid):
        return cell_steps(by_id[cid], cfg, paper, epoch_steps=200)

    assert steps("scratch-s10-plus2000-seed0") == 4000 + 2000
    assert steps("scratch-s10-seed0") == 4000
    assert steps("incremental-taylor-unstructured-s10-p2000-seed0") == 2000
    assert steps("incremental-taylor-unstructured-s10-seed0") == 500
    assert steps("oneshot-magnitude-unstructured-s10-p500-seed0") == 500
    assert steps("oneshot-magnitude-unstructured-s10-seed0") == 0  # training-free
    assert steps("finetune-oneshot-magnitude-unstructured-s10-seed0") == 30 * 200
    assert by_id["finetune-oneshot-magnitude-unstructured-s10-seed0"].epochs == 30


def test_committed_grid_resumes_with_the_second_pass_recipe():
    """Every committed cell keeps its id, and the committed settings match the built-in recipe
    (new keys read as their defaults), with Fig. 2 extended or not."""
    grid = json.loads((COMMITTED / "grid.json").read_text())
    ids = {p.stem for p in (COMMITTED / "cells").glob("*.json")}
    for extra in (0, 27):
        cfg, paper = load_paper_recipe("paper", {"paper.fig2.extra_epochs": extra})
        assert paper.budget.enabled and paper.t1_finetuned
        assert ids <= {c.id for c in plan_cells(paper)}
        now = _settings(cfg.model_dump(mode="json"), paper.model_dump(mode="json"))
        before = _settings(grid["recipe"], grid["paper"])
        assert now == before
    assert "extra_epochs" not in grid["paper"]["fig2"] and "budget" not in grid["paper"]
    _, longer = load_paper_recipe("paper", {"paper.fig2.epochs": 30})
    now = _settings(cfg.model_dump(mode="json"), longer.model_dump(mode="json"))
    assert now["fig2"] != before["fig2"]  # changing the cosine span is a different experiment


def _finetune_cell(epochs):
    return Cell("finetune-x", "finetune", ("fig2",), 0.1, 0, "one-shot", epochs=epochs)


def test_a_shorter_fig2_cell_is_to_extend(tmp_path):
    (tmp_path / "cells").mkdir()
    record = {"id": "finetune-x", "steps": 600, "epoch_steps": 200}  # an older record: no epochs
    (tmp_path / "cells" / "finetune-x.json").write_text(json.dumps(record))
    assert cell_status(tmp_path, _finetune_cell(3)) == ("done", 0)
    assert cell_status(tmp_path, _finetune_cell(2)) == ("done", 0)
    assert cell_status(tmp_path, _finetune_cell(30)) == ("extend", 0)  # its runs/ is gone
    state = tmp_path / "runs" / "finetune-x" / "checkpoints" / "last" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"state": {"step": 600}}))
    assert cell_status(tmp_path, _finetune_cell(30)) == ("extend", 600)


def test_bad_budget_values_are_one_line_errors():
    with pytest.raises(PrunekitError, match="paper.budget.sizes"):
        parse_paper({"budget": {"sizes": [2]}})
    with pytest.raises(PrunekitError, match="paper.budget.steps"):
        parse_paper({"budget": {"steps": [0, 100]}})
    with pytest.raises(PrunekitError, match="paper.budget.step' is not known"):
        parse_paper({}, {"budget.step": [100]})
    assert parse_paper({"budget": {"steps": [2000, 500, 500]}}).budget.steps == [500, 2000]
