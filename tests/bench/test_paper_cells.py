"""The paper grid's cell list: unique ids, shared runs merged, seeds only on the seeded sizes."""

import pytest

from prunekit.bench.paper_cells import plan_cells, prune_id, select
from prunekit.bench.paper_spec import PaperConfig, load_paper_recipe, parse_paper, size_label
from prunekit.errors import PrunekitError
from prunekit.eval.size import param_count
from prunekit.models import build_model


def test_ids_unique_and_grid_complete():
    cells = plan_cells(PaperConfig())
    ids = [c.id for c in cells]
    assert len(ids) == len(set(ids))
    assert ids[0] == "baseline"
    kinds = [c.kind for c in cells]
    # 4 sizes x (1 one-shot + 3 criteria + 2 more methods) prune cells, 4 scratch, + 2 seeds x 7
    assert kinds.count("prune") == 4 * 6 + 2 * 6
    assert kinds.count("scratch") == 4 + 2
    assert kinds.count("finetune") == 8 and kinds.count("layer") == 4
    assert len(cells) == 1 + 36 + 6 + 8 + 4


def test_shared_runs_are_one_cell_in_several_tables():
    by_id = {c.id: c for c in plan_cells(PaperConfig())}
    t1_incremental = by_id[prune_id("incremental", "magnitude", "unstructured", 0.1, 0)]
    assert {"table1", "table2", "fig2"} <= set(t1_incremental.tables)
    t2_data = by_id[prune_id("incremental", "taylor", "unstructured", 0.1, 0)]
    assert set(t2_data.tables) == {"table2", "table3"}
    assert by_id["incremental-activation-unstructured-s10-seed0"].tables == ("table2",)
    ft = by_id["finetune-oneshot-magnitude-unstructured-s5-seed0"]
    assert ft.source == "oneshot-magnitude-unstructured-s5-seed0"
    assert ft.depends == ("baseline", ft.source)


def test_fig2_cells_run_right_after_their_size_block():
    """A Fig. 2 cell follows its source within the same size's cells, before the next size."""
    cells = plan_cells(PaperConfig())
    index = {c.id: i for i, c in enumerate(cells)}
    for ft in (c for c in cells if c.kind == "finetune"):
        between = cells[index[ft.source] : index[ft.id]]
        assert between and all(c.size == ft.size and c.seed == 0 for c in between)
    first_layer = min(i for i, c in enumerate(cells) if c.kind == "layer")
    assert max(index[c.id] for c in cells if c.kind == "finetune") < first_layer


def test_seeds_only_on_seeded_sizes():
    cells = plan_cells(PaperConfig())
    extra = [c for c in cells if c.seed != 0]
    assert extra and all(c.size == 0.1 and c.kind in ("prune", "scratch") for c in extra)
    tens = [c for c in cells if c.size == 0.1 and c.kind in ("prune", "scratch")]
    assert {c.seed for c in tens} == {0, 1, 2}
    assert all(c.seed == 0 for c in cells if c.kind in ("finetune", "layer"))


def test_size_labels_and_select_adds_dependencies():
    assert [size_label(s) for s in (0.5, 0.25, 0.1, 0.05, 0.025)] == [
        "s50", "s25", "s10", "s5", "s2.5",
    ]  # fmt: skip
    cells = plan_cells(PaperConfig())
    got = [c.id for c in select(cells, "finetune-incremental-*-s10-seed0")]
    assert got == [
        "baseline",
        "incremental-magnitude-unstructured-s10-seed0",
        "finetune-incremental-magnitude-unstructured-s10-seed0",
    ]
    assert select(cells, "nothing-*") == []


@pytest.mark.parametrize("name", ["paper", "paper_tiny"])
def test_builtin_recipes_parse(name):
    cfg, paper = load_paper_recipe(name, {"paper.fig2.epochs": 2, "train.steps": 7})
    assert paper.fig2.epochs == 2 and cfg.train.steps == 7
    assert cfg.data.tokenizer == "sentencepiece" and cfg.model["arch"] == "transformer"
    if name == "paper":  # seed-004 shape scaled to about 4M parameters
        model = build_model({**cfg.model, "vocab_size": cfg.data.vocab_size})
        assert 3.8e6 < param_count(model) < 4.5e6
        assert cfg.model["n_layer"] == 6


def test_bad_paper_keys_are_one_line_errors(tmp_path):
    with pytest.raises(PrunekitError, match="paper.fig2.epoch' is not known"):
        parse_paper({}, {"fig2.epoch": 3})
    with pytest.raises(PrunekitError, match="paper.sizes"):
        parse_paper({"sizes": [10]})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prune:\n  - name: x\n")
    with pytest.raises(PrunekitError, match="configure them under `paper:`"):
        load_paper_recipe(str(recipe))
    with pytest.raises(PrunekitError, match="does not exist"):
        load_paper_recipe("no_such_recipe")
