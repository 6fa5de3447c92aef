"""`prunekit report` on hand-made cells of the second pass: the budget table and its verdict
notes, Table 1 with one-shot + training, where the Fig. 2 gap flattens, and `--compare`."""

import json

import pytest

from prunekit.cli.main import main
from prunekit.report.paper import build_report
from prunekit.report.paper_budget import cpu_seconds, threshold
from prunekit.report.paper_fig2 import flatness

BASE = {"id": "baseline", "kind": "baseline", "seed": 0, "valid_ppl": 16.0, "steps": 4000,
        "params": 20_000_000, "effective_params": 20_000_000, "flops_per_token": 40_000_000,
        "sparse_flops_per_token": 40_000_000, "cpu_seconds_last_call": 1000.0,
        "wall_seconds_last_call": 400.0, "train_seconds": 450.0}  # fmt: skip


def _prune(method, size, seed, ppl, steps, budget=False, schedule="incremental", crit="taylor"):
    tag = {"one-shot": "oneshot"}.get(schedule, schedule)
    cid = f"{tag}-{crit}-{method}-s{100 * size:g}{f'-p{steps}' if budget else ''}-seed{seed}"
    cell = {"id": cid, "kind": "prune", "schedule": schedule, "criterion": crit,
            "method": method, "size": size, "seed": seed, "valid_ppl": ppl, "step": steps,
            "effective_params": int(size * 20e6), "cpu_seconds_last_call": 0.1 * steps,
            "resumed_from_step": 0}  # fmt: skip
    return cell | ({"budget_steps": steps} if budget else {})


def _scratch(size, seed, ppl, plus=None):
    cid = f"scratch-s{100 * size:g}{f'-plus{plus}' if plus else ''}-seed{seed}"
    cell = {"id": cid, "kind": "scratch", "size": size, "seed": seed, "valid_ppl": ppl,
            "steps": 4000 + (plus or 0), "effective_params": int(size * 20e6),
            "cpu_seconds_last_call": 200.0}  # fmt: skip
    return cell | ({"budget_steps": plus} if plus else {})


def _write(folder, cells, corpus="shakespeare"):
    (folder / "cells").mkdir(parents=True)
    for c in [BASE, *cells]:
        (folder / "cells" / f"{c['id']}.json").write_text(json.dumps(c))
    paper = {"t1_criterion": "magnitude", "criteria": ["magnitude", "taylor"],
             "extra_criteria": [], "t3_criterion": "taylor",
             "methods": ["unstructured", "factorized"], "prune": {"steps": 500},
             "budget": {"criterion": None}}  # fmt: skip
    grid = {"paper": paper, "recipe": {"data": {"corpus": corpus}}, "invocations": []}
    (folder / "grid.json").write_text(json.dumps(grid))


def _budget_cells(p2000=78.0):
    """10 %: scratch 80/81/82 (mean 81); pruned at 500 steps 94, at 2000 steps p2000 (3 seeds
    each); compute-matched scratch (4000 + N) 79 and 75. Factorized: 92, then 85."""
    cells = []
    for seed, jitter in enumerate((-1.0, 0.0, 1.0)):
        cells += [_scratch(0.1, seed, 81.0 + jitter), _scratch(0.1, seed, 79.0 + jitter, 500),
                  _scratch(0.1, seed, 75.0 + jitter, 2000),
                  _prune("unstructured", 0.1, seed, 94.0 + jitter / 2, 500),
                  _prune("unstructured", 0.1, seed, p2000 + jitter / 2, 2000, budget=True),
                  _prune("factorized", 0.1, seed, 92.0, 500),
                  _prune("factorized", 0.1, seed, 85.0, 2000, budget=True)]  # fmt: skip
    cells[-3]["resumed_from_step"] = 1000  # seed 2's unstructured 2000-step run: resumed halfway
    return cells


def test_budget_table_and_notes_match_hand_computed_values(tmp_path):
    _write(tmp_path, _budget_cells())
    paths = build_report(tmp_path, command="prunekit report X", machine={})
    md = paths["tables"].read_text()
    sec = md.split("## Pruning budget")[1].split("## Fig. 2")[0]
    rows = {ln.split(" | ")[1]: ln for ln in sec.splitlines() if ln.startswith("| 2.00M")}
    # N = 2000: unstructured 78 vs scratch 81: -3.7 %; vs 4000 + 2000 (75): +4.0 %.
    # factorized 85: +4.9 % and +13.3 %. CPU: unstructured (200 + 200 + 200 x 2000 / 1000) / 3.
    assert "| 75.00 ± 1.00 (n=3) | 78.00 ± 0.50 (n=3) | -3.7 | +4.0 |" in rows["2000"]
    assert "| 85.00 ± 0.00 (n=3) | +4.9 | +13.3 |" in rows["2000"]
    assert rows["2000"].endswith("| ≈267 / 200 / 200 |")
    # N = 500 (the Tables 1-3 cells): 94 vs 81 = +16.0 %, vs 79 = +19.0 %
    assert "| 94.00 ± 0.50 (n=3) | +16.0 | +19.0 |" in rows["500"]
    assert "4000 steps, ≈1,125 CPU s" in sec  # baseline: 1000 x 450 / 400: it was resumed
    assert paths["budget"].read_bytes()[:4] == b"\x89PNG"

    findings = {f["id"]: f for f in json.loads(paths["results"].read_text())["findings"]}
    note = findings["scratch"]["budget"]
    assert note.startswith("**depends on the budget**")
    assert "vs scratch (4000): 10 %: only with >= 2000 pruning steps (-3.7 % at 2000)" in note
    assert (
        "vs scratch (4000 + N): 10 %: at no budget up to 2000 steps (best +4.0 % at 2000)" in note
    )
    assert findings["factorized"]["budget"].startswith("same at every budget measured")
    assert "| budget dependence |" in md.split("Findings:")[1]


def test_within_seed_noise_is_marked(tmp_path):
    _write(tmp_path, _budget_cells(p2000=80.9))  # 80.9 ± 0.5 vs 81 ± 1: noise
    md = build_report(tmp_path, command="X", machine={})["tables"].read_text()
    row = next(ln for ln in md.split("## Pruning budget")[1].splitlines() if "| 2000 |" in ln)
    assert "| -0.1 (n.s.) |" in row and "| +4.9 |" in row  # factorized: no spread, no test


def test_table1_sets_one_shot_with_training_beside_the_training_free_one(tmp_path):
    cells = [
        _prune("unstructured", 0.5, 0, 86.0, 0, schedule="one-shot", crit="magnitude"),
        _prune(
            "unstructured", 0.5, 0, 64.0, 500, budget=True, schedule="one-shot", crit="magnitude"
        ),
        _prune("unstructured", 0.5, 0, 61.5, 500, crit="magnitude"),
    ]
    _write(tmp_path, cells)
    paths = build_report(tmp_path, command="X", machine={})
    md = paths["tables"].read_text().split("## Table 1")[1].split("## Table 2")[0]
    assert "| One-shot + 500 steps |" in md and "| Δ% vs one-shot + steps |" in md
    # 61.5 / 86 - 1 = -28.5 %; 61.5 / 64 - 1 = -3.9 %
    assert "| 86.00 | — | 64.00 | 61.50 | — | -28.5 | -3.9 |" in md
    assert "## Pruning budget" not in paths["tables"].read_text()  # one-shot is not the axis
    findings = {f["id"]: f for f in json.loads(paths["results"].read_text())["findings"]}
    assert findings["schedulers"]["budget"] == (
        "vs one-shot + 500 training steps (as many as the incremental run): -3.9 % to -3.9 %, "
        "incremental ahead at 1 of 1 sizes"
    )


def test_one_shot_with_training_can_turn_the_scheduler_verdict(tmp_path):
    cells = [
        _prune("unstructured", 0.5, 0, 86.0, 0, schedule="one-shot", crit="magnitude"),
        _prune("unstructured", 0.5, 0, 60.0, 500, True, "one-shot", "magnitude"),
        _prune("unstructured", 0.5, 0, 61.5, 500, crit="magnitude"),
    ]
    _write(tmp_path, cells)
    paths = build_report(tmp_path, command="X", machine={})
    findings = {f["id"]: f for f in json.loads(paths["results"].read_text())["findings"]}
    assert findings["schedulers"]["verdict"] == "reproduced"  # vs the training-free one-shot
    assert findings["schedulers"]["budget"] == (  # 61.5 / 60 - 1 = +2.5 %
        "**depends on the budget**: vs one-shot + 500 training steps (as many as the incremental "
        "run): +2.5 % to +2.5 %, incremental ahead at 0 of 1 sizes"
    )


def test_seeds_test_incremental_against_one_shot_with_training(tmp_path):
    cells = []
    for seed, d in enumerate((-0.5, 0.0, 0.5)):
        cells += [
            _prune("unstructured", 0.1, seed, 90.0 + d, 500, True, "one-shot", "magnitude"),
            _prune("unstructured", 0.1, seed, 80.0 + d, 500, crit="magnitude"),
        ]
    _write(tmp_path, cells)
    paths = build_report(tmp_path, command="X", machine={})
    checks = json.loads(paths["results"].read_text())["seed_checks"]
    row = next(
        c for c in checks if c["comparison"] == "incremental vs one-shot + 500 steps (magnitude)"
    )
    assert (row["a_mean"], row["b_mean"], row["beyond_noise"]) == (80.0, 90.0, True)
    assert row["delta_pct"] == pytest.approx(-100 / 9)


def _fig2(folder, inc_curve, one_curve):
    cells = []
    for sched, curve in (("incremental", inc_curve), ("one-shot", one_curve)):
        tag = {"one-shot": "oneshot"}.get(sched, sched)
        cells.append({"id": f"finetune-{tag}-magnitude-unstructured-s10-seed0", "kind": "finetune",
                      "schedule": sched, "criterion": "magnitude", "method": "unstructured",
                      "size": 0.1, "seed": 0, "valid_ppl": curve[-1][1], "curve": curve,
                      "lr_phases": [{"until_epoch": 3, "lr": 1e-3, "decay": "cosine"},
                                    {"until_epoch": len(curve) - 1, "lr": 1e-4,
                                     "decay": "constant"}]})  # fmt: skip
    _write(folder, cells)


def test_fig2_says_where_the_gap_flattened(tmp_path):
    one = [[e, 100.0] for e in range(31)]
    # the gap: -50 % at 0, -20 % at 1, then it closes by 2 points per epoch until epoch 10
    # (-2 %) and stays at -2 % (+- 0.2): flat from epoch 13 with the 3-epoch window, 1 point
    gap = [-50.0, -20.0] + [-20.0 + 2 * (e - 1) for e in range(2, 10)] + [-2.0] * 21
    gap = [g + (0.2 if e % 2 and e > 10 else 0.0) for e, g in enumerate(gap)]
    inc = [[e, 100.0 * (1 + g / 100)] for e, g in enumerate(gap)]
    _fig2(tmp_path / "a", inc, one)
    md = build_report(tmp_path / "a", command="X", machine={})["tables"].read_text()
    fig2 = md.split("## Fig. 2")[1].split("## Fig. 3")[0]
    assert "- 2.00M (10 %): flat from epoch 13 (gap -2.0 % at epoch 30" in fig2
    assert "then a constant lr 0.0001 up to epoch 30" in fig2
    head = next(ln for ln in fig2.splitlines() if ln.startswith("| Model size"))
    assert head.count("epoch") <= 12 and "| epoch 0 |" in head and head.endswith("| epoch 30 |")
    assert "--flat-points" not in fig2
    # the same curve cut at epoch 5 is still moving; a looser tolerance calls it flat
    _fig2(tmp_path / "b", inc[:6], one[:6])
    md = build_report(tmp_path / "b", command="X", machine={})["tables"].read_text()
    assert "still moving: 6.0 points over epochs 2–5" in md
    md = build_report(tmp_path / "b", command="X", machine={}, flat=(3, 7))["tables"].read_text()
    assert "flat from epoch 4" in md


def test_flatness_and_threshold_helpers():
    f = flatness([(0, -50.0), (1, -10.0), (2, -9.5), (3, -9.4), (4, -9.2)], 2, 1)
    assert f.flat_from == 3.0 and f.last_move == pytest.approx(0.3)
    assert flatness([(0, -50.0), (1, -10.0)], 3, 1) is None  # no full window yet
    moved_again = flatness([(0, 0.0), (1, 0.1), (2, 0.2), (3, 5.0)], 2, 1)
    assert moved_again.flat_from is None and moved_again.last_move == pytest.approx(4.9)
    assert threshold([(500, 16.7), (1000, 4.0), (2000, -3.1), (4000, -5.0)]) == (
        "only with >= 2000 pruning steps (-3.1 % at 2000, -5.0 % at 4000)", True)  # fmt: skip
    assert threshold([(500, -1.0), (4000, -2.0)]) == ("at every budget (500–4000 steps)", False)
    assert (
        threshold([(500, 3.0), (4000, 1.0)])[0]
        == "at no budget up to 4000 steps (best +1.0 % at 4000)"
    )
    assert threshold([(500, -1.0), (1000, 2.0), (2000, 1.0)]) == (
        "at 500 steps only (not monotone in the budget)", True)  # fmt: skip


def test_cpu_seconds_scale_a_resumed_run():
    assert cpu_seconds({"kind": "prune", "cpu_seconds_last_call": 30.0, "step": 500,
                        "resumed_from_step": 0}) == (30.0, False)  # fmt: skip
    assert cpu_seconds({"kind": "prune", "cpu_seconds_last_call": 30.0, "step": 500,
                        "resumed_from_step": 400}) == (150.0, True)  # fmt: skip
    assert cpu_seconds({"kind": "scratch"}) is None


def test_compare_two_corpora(tmp_path, capsys):
    _write(tmp_path / "a", _budget_cells(), corpus="shakespeare")
    _write(tmp_path / "b", _budget_cells(p2000=90.0), corpus="/data/corpora/web-bible")
    out = tmp_path / "compare.md"
    argv = ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--compare", "--out", str(out)]
    assert main(argv) == 0
    md = out.read_text()
    assert "| Paper's finding | paper | shakespeare | web-bible | on both |" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| Pruning a large model"))
    # 10 % at the 500-step budget: +16.0 % on both: the opposite of the paper
    assert row.endswith("| **reversed** (+16.0 % to +16.0 %) | **reversed** (+16.0 % to +16.0 %) "
                        "| **reversed on both** |")  # fmt: skip
    notes = md.split("How the verdicts depend on the budget:")[1]
    scratch = next(ln for ln in notes.splitlines() if ln.startswith("| Pruning a large model"))
    assert "only with >= 2000 pruning steps" in scratch  # shakespeare: 78 < 81
    assert "at no budget up to 2000 steps (best +11.1 % at 2000)" in scratch  # web-bible: 90
    assert "prunekit report" in md and not (tmp_path / "a" / "tables.md").exists()

    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), "--compare"]) == 2
    assert "two grid folders" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prunekit report A B --compare" in err[0]
