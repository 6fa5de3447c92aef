"""The training benchmarks run end to end on a tiny model (numbers are not asserted: speed is
measured by `prunekit bench`, never by tests)."""

from prunekit.bench import prune_overhead, train_throughput
from prunekit.config import parse_recipe
from prunekit.machine import machine_info


def test_train_throughput_reports_both_loops(tiny_corpus, tiny_recipe, tmp_path):
    cfg = parse_recipe(tiny_recipe(tiny_corpus))
    result = train_throughput.measure(cfg, steps=2, repeats=2, threads=[1], tmp=tmp_path)
    r = result["by_threads"]["1"]
    assert len(r["trainer_tokens_per_s"]) == len(r["hand_loop_tokens_per_s"]) == 2
    assert r["ratio"] == r["trainer_median"] / r["hand_loop_median"]
    md = train_throughput.to_markdown(result, machine_info(), "prunekit bench train")
    assert "| 1 |" in md and "`prunekit bench train`" in md


def test_prune_overhead_reports_every_variant(tiny_corpus, tiny_recipe, tmp_path):
    cfg = parse_recipe(tiny_recipe(tiny_corpus))
    result = prune_overhead.measure(cfg, steps=2, repeats=1, threads=[1], tmp=tmp_path)
    ratios = result["by_threads"]["1"]["step_time_ratio"]
    assert set(ratios) == {"plain", "masked", "masked+updates"} and ratios["plain"] == 1.0
    assert "masked+updates" in prune_overhead.to_markdown(result, machine_info(), "cmd")
