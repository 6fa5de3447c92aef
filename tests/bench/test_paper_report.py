"""`prunekit report` on hand-made cell JSONs: the paper's tables with hand-computed Δ% values,
mean ± std over seeds, the PNGs and results.json - from the JSON alone."""

import json

import pytest

from prunekit.cli.main import main
from prunekit.report.paper import build_report, delta_pct, mean_std

BASE = {"id": "baseline", "kind": "baseline", "seed": 0, "valid_ppl": 16.0, "test_ppl": 17.0,
        "params": 20_000_000, "effective_params": 20_000_000, "flops_per_token": 40_000_000,
        "sparse_flops_per_token": 40_000_000, "command": "prunekit bench paper --recipe x",
        "git_commit": "abc1234", "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2"}}  # fmt: skip


def _cell(kind, schedule, criterion, method, size, seed, ppl, tables, **extra):
    sched = {"one-shot": "oneshot"}.get(schedule, schedule)
    cid = f"{sched}-{criterion}-{method}-s{100 * size:g}-seed{seed}"
    if kind == "scratch":
        cid = f"scratch-s{100 * size:g}-seed{seed}"
    return {"id": cid, "kind": kind, "schedule": schedule, "criterion": criterion,
            "method": method, "size": size, "seed": seed, "valid_ppl": ppl, "test_ppl": ppl + 1,
            "tables": tables, "effective_params": int(size * 20e6), "baseline_params": 20_000_000,
            "sparse_flops_per_token": int(size * 40e6), "flop_speedup": 1 / size, **extra}  # fmt: skip


def _write_grid(folder):
    cells = [BASE]
    # Table 1 (seed 004's numbers): 50 %: one-shot 16.5, incremental 16.2; 10 %: three seeds.
    cells.append(_cell("prune", "one-shot", "magnitude", "unstructured", 0.5, 0, 16.5, ["table1"]))
    cells.append(
        _cell("prune", "incremental", "magnitude", "unstructured", 0.5, 0, 16.2,
              ["table1", "table2"], speedup_vs_dense=1.25, decode_ms_per_token=0.8)
    )  # fmt: skip
    for seed, (one, inc) in enumerate([(33.0, 19.0), (33.1, 19.6), (33.2, 20.2)]):
        cells.append(
            _cell("prune", "one-shot", "magnitude", "unstructured", 0.1, seed, one, ["table1"])
        )
        cells.append(
            _cell("prune", "incremental", "magnitude", "unstructured", 0.1, seed, inc,
                  ["table1", "table2"])
        )  # fmt: skip
    # Table 2 / 3 at 50 %: data-driven 16.0, activation 16.4, scratch 17.1, structured 19.8.
    cells.append(
        _cell("prune", "incremental", "taylor", "unstructured", 0.5, 0, 16.0, ["table2", "table3"])
    )
    cells.append(
        _cell("prune", "incremental", "activation", "unstructured", 0.5, 0, 16.4, ["table2"])
    )
    cells.append(_cell("scratch", None, None, None, 0.5, 0, 17.1, ["table3"]))
    cells.append(_cell("prune", "incremental", "taylor", "structured", 0.5, 0, 19.8, ["table3"]))
    # Fig. 2 at 10 %: one-shot 33.1 -> 25 -> 24, incremental 19.6 -> 19.5 -> 19.4.
    for sched, curve in (("one-shot", [[0, 33.1], [1, 25.0], [2, 24.0]]),
                         ("incremental", [[0, 19.6], [1, 19.5], [2, 19.4]])):  # fmt: skip
        c = _cell("finetune", sched, "magnitude", "unstructured", 0.1, 0, curve[-1][1], ["fig2"])
        cells.append({**c, "id": "finetune-" + c["id"], "curve": curve})
    # Fig. 3: the output layer hurts most.
    for group, peak, final in (("embedding", 16.4, 16.1), ("output", 18.0, 17.0)):
        cells.append({"id": f"layer-{group}-seed0", "kind": "layer", "group": group, "seed": 0,
                      "tables": ["fig3"], "valid_ppl": final, "effective_params": 19_000_000,
                      "group_params": 4_000_000, "group_sparsity": 0.75,
                      "curve": [[0, 16.0], [10, peak], [20, final]]})  # fmt: skip
    (folder / "cells").mkdir(parents=True)
    for c in cells:
        (folder / "cells" / f"{c['id']}.json").write_text(json.dumps(c))


def test_mean_std_and_delta():
    mean, std = mean_std([19.0, 19.6, 20.2])
    assert mean == pytest.approx(19.6) and std == pytest.approx(0.6)  # sample std (n - 1)
    assert mean_std([5.0]) == (5.0, 0.0)
    assert delta_pct(16.2, 16.5) == pytest.approx(-1.818, abs=1e-3)


def test_tables_match_hand_computed_values(tmp_path):
    _write_grid(tmp_path)
    paths = build_report(tmp_path, command="prunekit report X", machine={"git_commit": "def5678"})
    md = paths["tables"].read_text()
    lines = md.splitlines()

    def row(prefix, section):
        start = next(i for i, ln in enumerate(lines) if ln.startswith(section))
        return next(ln for ln in lines[start:] if ln.startswith(prefix))

    # Table 1: 16.2 / 16.5 - 1 = -1.8 %; 19.6 / 33.1 - 1 = -40.8 % (seed means).
    t1_50 = row("| 10.00M (50 %)", "## Table 1")
    assert "| 16.50 |" in t1_50 and "| 16.20 |" in t1_50 and t1_50.endswith("| -1.8 |")
    assert "| 20.00M (2.00×) / — |" in t1_50 and "| 20.00M (2.00×) / 1.25× |" in t1_50
    t1_10 = row("| 2.00M (10 %)", "## Table 1")
    assert "33.10 ± 0.10 (n=3)" in t1_10 and "19.60 ± 0.60 (n=3)" in t1_10
    assert t1_10.endswith("| -40.8 |")
    # Table 2: taylor 16.0 vs magnitude 16.2 = -1.2 %; activation 16.4 = +1.2 %.
    t2 = row("| 10.00M (50 %)", "## Table 2")
    assert "| 16.00 | -1.2 |" in t2 and "| 16.40 | +1.2 |" in t2
    # Table 3: vs scratch 17.1: unstructured 16.0 = -6.4 %, structured 19.8 = +15.8 %.
    t3 = md[md.index("## Table 3") :]
    assert "| from scratch | 17.10 |" in t3 and "| unstructured | 16.00 |" in t3
    deltas = [ln for ln in t3.splitlines() if ln.startswith("| ↳ Δ% vs scratch")]
    assert deltas[0].startswith("| ↳ Δ% vs scratch | -6.4 |")
    assert deltas[1].startswith("| ↳ Δ% vs scratch | +15.8 |")
    # Fig. 2: 19.6/33.1 - 1 = -40.8, 19.5/25 - 1 = -22.0, 19.4/24 - 1 = -19.2.
    assert "| 2.00M (10 %) | -40.8 | -22.0 | -19.2 |" in md
    # Fig. 3: output 17.0 vs 16.0 = +6.2 %, peak 18.00 at step 10.
    assert "| output | 4.00M (20 %) | 75.0 % | 19.00M | 17.00 | +6.2 | 18.00 @ 10 |" in md
    # Provenance: the report command and commit, and the grid command that made the cells.
    assert "prunekit report X" in md and "def5678" in md
    assert "prunekit bench paper --recipe x" in md and "abc1234" in md

    for key in ("sizes", "fig2", "fig3"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads(paths["results"].read_text())
    assert results["git_commit"] == "def5678" and len(results["cells"]) == 17
    inc10 = next(a for a in results["aggregates"]
                 if a["schedule"] == "incremental" and a["size"] == 0.1)  # fmt: skip
    assert inc10["mean"] == pytest.approx(19.6) and inc10["std"] == pytest.approx(0.6)
    assert inc10["n"] == 3 and inc10["seeds"] == [0, 1, 2]


def test_report_cli(tmp_path, capsys):
    _write_grid(tmp_path / "g")
    assert main(["report", str(tmp_path / "g"), "--metric", "test_ppl"]) == 0
    assert "Table 1" in (tmp_path / "g" / "tables.md").read_text()
    assert "17.50" in (tmp_path / "g" / "tables.md").read_text()  # one-shot 50 %: 16.5 + 1
    capsys.readouterr()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no cells/*.json" in err[0]


def test_report_sets_the_grid_beside_the_published_numbers_with_verdicts(tmp_path):
    _write_grid(tmp_path)
    paths = build_report(tmp_path, command="prunekit report X", machine={})
    md = paths["tables"].read_text()
    side = md[md.index("## Side by side with seed 004") :]
    # Table 1 at 50 %: the paper's 16.5 / 16.2 (-1.8 %) next to ours (the same numbers here).
    assert "| 10.00M (50 %) | 16.5 / 16.2 | -1.8 | 16.50 / 16.20 | -1.8 |" in side
    findings = {f["finding"]: f for f in json.loads(paths["results"].read_text())["findings"]}
    assert findings["Incremental pruning beats one-shot at every size"]["verdict"] == "reproduced"
    assert findings["Structured pruning is the worst method"]["verdict"] == "not measured yet"
    scratch = findings["Pruning a large model (unstructured) beats training that size from scratch"]
    assert scratch["verdict"] == "reproduced" and scratch["ours"] == "-6.4 % to -6.4 %"
    assert findings["Pruning the output projection hurts most"]["verdict"] == "reproduced"
    assert findings["Incremental stays ahead of one-shot after further fine-tuning"]["verdict"] == (
        "reproduced"
    )


def test_verdicts():
    from prunekit.report.published import verdict

    assert verdict([], []) == "not measured yet"
    assert verdict([True, True], [False, False]) == "reproduced"
    assert verdict([False, False], [True, True]) == "reversed"
    assert verdict([False], [False]) == "not reproduced"
    assert verdict([True, False, False], [False, True, False]) == "partly (1 of 3 sizes)"


def test_seed_checks_use_welch_t_against_the_95_percent_critical_value(tmp_path):
    from prunekit.report.paper import Agg
    from prunekit.report.seeds import t_critical, welch

    def agg(mean, std, n=3):
        return Agg(mean, std, n, list(range(n)), 1.0, None, None, None, None)

    t, dof = welch(agg(10.0, 1.0), agg(10.5, 1.0))
    assert t == pytest.approx(-0.5 / (2 / 3) ** 0.5) and dof == pytest.approx(4.0)
    assert t_critical(dof) == pytest.approx(2.776) and t_critical(2.9) == pytest.approx(4.303)
    assert welch(agg(1.0, 0.0), agg(2.0, 0.0)) is None
    # one side without spread (a training-free cell): only the other side's variance counts
    assert welch(agg(12.0, 0.0), agg(10.0, 1.0))[1] == pytest.approx(2.0)

    _write_grid(tmp_path)  # 10 %: one-shot 33.0/33.1/33.2, incremental 19.0/19.6/20.2
    paths = build_report(tmp_path, command="prunekit report X", machine={})
    md = paths["tables"].read_text().split("## Seeds: which differences are real")[1]
    row = next(x for x in md.splitlines() if "incremental vs one-shot" in x)
    assert "19.60 ± 0.60" in row and "33.10 ± 0.10" in row and "-40.8" in row
    assert "-38.4 (2.1)" in row and row.endswith("**yes** |")
    data = json.loads(paths["results"].read_text())["seed_checks"]
    assert [c["comparison"] for c in data] == ["incremental vs one-shot (magnitude)"]
