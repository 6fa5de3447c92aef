"""`prunekit bench stream` on tiny shapes: exact streaming, every variant built and timed, the
variants compute what they should, the report and the CLI."""

import json

import pytest
import torch
from torch import nn

from prunekit.bench.stream_latency import (
    build_stream_variants,
    compare_streaming,
    compressed,
    rnn_consumers,
    stream_markdown,
    stream_targets,
)
from prunekit.bench.stream_models import FrameStackRNN, OrtStream, stack_model
from prunekit.cli.main import main
from prunekit.errors import PrunekitError
from prunekit.export.compact import compact
from prunekit.export.layers import Int8LowRankLinear, LowRankLinear
from prunekit.export.linear_rnn import LinearRNN
from prunekit.lowrank import select_matrices
from prunekit.lowrank.svd import fraction_plan
from prunekit.prune import count_params

TINY = {"n_mels": 8, "d_input": 24, "d_hidden": 20, "n_layer": 2, "n_units": 7}


def _stream(model, feats):
    state, outs = model.init_stream(1), []
    with torch.no_grad():
        for i in range(feats.shape[1]):
            out, state = model.step(feats[:, i : i + 1], state)
            outs.append(torch.as_tensor(out))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_frame_stack_streams_exactly_and_onnxruntime_agrees(cell):
    torch.manual_seed(0)
    model = stack_model({**TINY, "cell": cell})
    feats = torch.randn(1, 12, 8)
    with torch.no_grad():
        full, lengths = model(feats)
    assert full.shape == (1, 3, 7) and lengths.tolist() == [3]
    assert float((_stream(model, feats) - full).abs().max()) < 1e-5
    ort = OrtStream(model)
    assert float((_stream(ort, feats) - full).abs().max()) < 1e-4


def test_compressed_variants_keep_the_fraction_and_compact_matches():
    torch.manual_seed(0)
    base = stack_model(TINY)
    scope = sum(m.shape[0] * m.shape[1] for m in select_matrices(base))
    feats = torch.randn(1, 8, 8)
    for method in ("lowrank", "sparse", "structured"):
        model, info = compressed(base, method, 0.25)
        removed = count_params(base) - info["params"]
        assert removed == pytest.approx(0.75 * scope, rel=0.1), method
        fast, _ = compact(model, repeats=2)
        assert float((_stream(fast, feats) - _stream(model, feats)).abs().max()) < 1e-4, method
    plan = fraction_plan(select_matrices(base), 0.25)
    assert plan["rnn.weight_hh_l1"] == int(0.25 * 60 * 20 / 80)
    assert rnn_consumers(base) == {"rnn": "head"}


def test_every_variant_is_built_timed_and_reported():
    torch.manual_seed(0)
    base = stack_model(TINY)
    variants, info = build_stream_variants(base, [0.25], repeats=2)
    expected = {"dense-eager", "dense", "int8", "torch-int8", "onnxruntime", "floor"}
    for m in ("lowrank", "sparse", "structured"):
        expected |= {f"{m}@0.25", f"{m}@0.25+int8"}
    assert set(variants) == expected
    assert isinstance(variants["lowrank@0.25"].rnn, LinearRNN)
    assert all(isinstance(g, LowRankLinear) for g in variants["lowrank@0.25"].rnn.hh)
    assert all(isinstance(g, Int8LowRankLinear) for g in variants["lowrank@0.25+int8"].rnn.hh)
    feats = torch.randn(1, 8, 8)
    ref = _stream(base, feats)
    for name in ("dense", "onnxruntime"):
        assert float((_stream(variants[name], feats) - ref).abs().max()) < 1e-4, name
    for name in ("int8", "torch-int8"):
        assert float((_stream(variants[name], feats) - ref).abs().max()) < 0.1, name
    timed = compare_streaming(variants, baseline="dense", n_mels=8, frames=8, repeats=2)
    rows = timed["by_threads"]["1"]
    assert set(rows) == expected and rows["dense"]["speedup"] == 1.0
    assert all(r["median_ms"] > 0 and len(r["samples_ms"]) == 2 for r in rows.values())
    v = timed["variants"]
    assert v["lowrank@0.25"]["flop_ratio"] > 2 and v["structured@0.25"]["flop_ratio"] > 2
    assert v["lowrank@0.25+int8"]["size"]["size_bytes"] < v["lowrank@0.25"]["size"]["size_bytes"]
    targets = stream_targets(timed, [0.25])
    assert [t["target"].split(":")[0].split(" ")[0] for t in targets] == [
        "lowrank@0.25", "structured@0.25", "sparse@0.25", "bound", "lowrank@0.25+int8"
    ]  # fmt: skip
    assert v["floor"]["flop_ratio"] > v["lowrank@0.25"]["flop_ratio"]
    result = {"model": "stack", "config": TINY, "fractions": [0.25], "variants_info": info,
              "stream": timed, "targets": targets}  # fmt: skip
    md = stream_markdown(result, {"cpu": "test"}, "prunekit bench stream")
    assert "| `lowrank@0.25+int8` |" in md and "| `onnxruntime` |" in md


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    config = json.dumps({**TINY, "cell": "lstm"})
    argv = ["bench", "stream", "--config", config, "--sizes", "0.25", "--threads", "1",
            "--frames", "4", "--repeats", "1", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "stream_stack.json").read_text())
    assert saved["config"]["cell"] == "lstm" and saved["command"].startswith("prunekit ")
    assert "lowrank@0.25" in saved["stream"]["by_threads"]["1"]
    assert (tmp_path / "stream_stack.md").read_text().startswith("# Streaming latency: stack")


def test_bad_input_errors(capsys):
    with pytest.raises(PrunekitError, match="^Linear has no init_stream/step"):
        compare_streaming({"dense": nn.Linear(2, 2)}, baseline="dense", n_mels=2)
    assert main(["bench", "stream", "--config", '{"bogus": 1}']) == 2
    err = capsys.readouterr().err
    assert "stack model config has unknown key(s) ['bogus']" in err
    assert isinstance(FrameStackRNN(n_mels=4), FrameStackRNN)
