"""`prunekit export` and `prunekit bench latency` in-process, on tiny models."""

import argparse
import json

import pytest
import torch
from compact_helpers import RNN_SCOPE, ids, logits, max_diff, tiny_rnn, tiny_transformer

from prunekit.bench.latency_suite import run_suite, suite_markdown
from prunekit.cli import bench_latency
from prunekit.cli import export as export_cmd
from prunekit.errors import PrunekitError
from prunekit.export import load_compact, read_manifest
from prunekit.export.compact import NEVER_PRUNED
from prunekit.models import model_config
from prunekit.prune import OneShot, PruneConfig, Pruner
from prunekit.train.checkpoint import save_checkpoint


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunekit")
    sub = parser.add_subparsers(dest="command")
    export_cmd.add_parser(sub)
    bench = sub.add_parser("bench").add_subparsers(dest="bench")
    bench_latency.add_latency_parser(bench)
    return parser


def _checkpoint(path, model, config: PruneConfig | None):
    """A checkpoint as a pruning run writes it: model_config, run.prune, masks in the weights."""
    if config is not None:
        Pruner(model, config).attach().prune_now(config.schedule.sparsity)
    run = {"recipe": {}, "prune": config.to_dict() if config else None}
    save_checkpoint(path, model, {"model_config": model_config(model), "run": run})
    return model


def _export(*argv: str) -> int:
    args = _parser().parse_args(["export", *argv, "--repeats", "2"])
    return args.func(args)


@pytest.mark.parametrize(
    ("make", "config"),
    [
        (tiny_transformer, PruneConfig(method="structured", schedule=OneShot(sparsity=0.5))),
        (
            lambda: tiny_rnn("lstm"),
            PruneConfig(method="structured", schedule=OneShot(sparsity=0.5), scope=RNN_SCOPE),
        ),
        (tiny_transformer, PruneConfig(method="factorized", schedule=OneShot(sparsity=0.6))),
    ],
    ids=["transformer-structured", "lstm-structured", "transformer-factorized"],
)
def test_export_a_pruned_checkpoint(tmp_path, capsys, make, config):
    masked = _checkpoint(tmp_path / "ckpt", make(), config)
    assert _export(str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"), "--onnx") == 0
    printed = capsys.readouterr().out
    assert f"exported to {tmp_path / 'out'}" in printed and "ONNX:" in printed
    loaded = load_compact(tmp_path / "out")
    idx = ids()
    assert max_diff(logits(loaded, idx), logits(masked.eval(), idx)) <= 1e-4
    manifest = read_manifest(tmp_path / "out")
    assert manifest["source"]["prune"] == config.to_dict()
    assert manifest["summary"]["flop_ratio"] > 1.0
    assert (tmp_path / "out" / "model.onnx").exists()


def test_export_int8_and_csr(tmp_path, capsys):
    config = PruneConfig(method="unstructured", schedule=OneShot(sparsity=0.8), scope=RNN_SCOPE)
    masked = _checkpoint(tmp_path / "ckpt", tiny_rnn("gru"), config)
    out = tmp_path / "out"
    assert _export(str(tmp_path / "ckpt"), "--out", str(out), "--int8", "--sparse", "csr") == 0
    manifest = read_manifest(out)
    assert manifest["options"]["int8"] is True and manifest["int8_choices"]
    idx = ids()
    assert max_diff(logits(load_compact(out), idx), logits(masked.eval(), idx)) < 0.05


def test_export_never_pruned_checkpoint(tmp_path):
    _checkpoint(tmp_path / "ckpt", tiny_transformer(), None)
    with pytest.raises(PrunekitError) as exc:
        _export(str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"))
    assert str(exc.value) == NEVER_PRUNED
    assert not (tmp_path / "out").exists()
    assert _export(str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"), "--dense") == 0
    assert read_manifest(tmp_path / "out")["pruned"] is False


def test_bench_latency_arguments():
    args = _parser().parse_args(["bench", "latency"])
    assert (args.model, args.sizes, args.threads, args.repeats) == ("both", "0.1", "1,2", 20)
    assert args.out == "benchmarks/results" and args.func is bench_latency.run_latency
    with pytest.raises(PrunekitError, match="--threads 'x' must be comma-separated numbers"):
        bench_latency._numbers("x", int, "threads")


TINY = {
    "arch": "rnn", "cell": "lstm", "vocab_size": 30, "d_embed": 8, "d_hidden": 12,
    "n_layer": 2, "dropout": 0.0,
}  # fmt: skip


def test_latency_suite_on_a_tiny_model():
    result = run_suite(
        "lstm", config=TINY, threads=(1,), repeats=2, context=3, steps=2,
        scoring_batch=2, scoring_len=3,
    )  # fmt: skip
    json.dumps(result)  # JSON-able
    names = set(result["decode"]["variants"])
    expected = {"dense-eager", "dense", "int8", "torch-int8", "masked@0.1", "torch-prune@0.1"}
    for method in ("structured", "factorized", "unstructured", "lowrank"):
        expected |= {f"{method}@0.1", f"{method}@0.1+int8"}
    assert names == expected == set(result["scoring"]["by_threads"]["1"])
    ranks = result["variants_info"]["lowrank@0.1"]["ranks"]  # the LSTM gate stacks factored too
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l1", "lm_head.weight"} <= set(ranks)
    assert result["decode"]["variants"]["lowrank@0.1"]["flop_ratio"] > 2
    assert any(t["target"].startswith("lowrank@0.1+int8 >= 10x") for t in result["targets"])
    assert result["decode"]["by_threads"]["1"]["dense"]["speedup"] == pytest.approx(1.0)
    assert {r["shape"][0] for r in result["break_even"]} == {48, 30}
    markdown = suite_markdown(result, {"cpu": "test"}, "prunekit bench latency")
    for heading in ("## Decode latency", "## Targets", "## Batched scoring", "break-even"):
        assert heading in markdown
    assert torch.get_num_threads() == 1


def test_latency_suite_runs_a_transformer_through_the_runtime_with_its_floor():
    config = {"arch": "transformer", "vocab_size": 30, "d_model": 16, "n_layer": 2, "n_head": 2,
              "d_ff": 32, "dropout": 0.0, "max_rel_pos": 4}  # fmt: skip
    result = run_suite(
        "transformer", config=config, threads=(1,), repeats=2, context=3, steps=2,
        scoring_batch=2, scoring_len=3,
    )  # fmt: skip
    names = set(result["decode"]["variants"])
    assert {"dense-eager", "dense-layout", "dense", "floor"} <= names
    floor = result["decode"]["variants"]["floor"]["flops_per_token"]
    assert floor < result["decode"]["variants"]["dense"]["flops_per_token"]
    assert any(t["target"].startswith("bound: dense / floor") for t in result["targets"])
