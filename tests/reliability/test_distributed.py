"""Under `torchrun --nproc_per_node 2`: pruning gives the masks and perplexity of one process with
the same global batch, and the same command twice gives bit-identical checkpoints."""

import json
import socket
import subprocess

import pytest
import torch
from reliability_helpers import cli_command, cli_env, prune_section, tiny_recipe_file
from safetensors.torch import load_file

from prunekit.config import parse_recipe
from prunekit.pipelines.lm_baseline import train_baseline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*argv) -> list[str]:
    run = [cli_command()[0], "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    run += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    return run + cli_command(*argv)[1:]


def _run(cmd) -> None:
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def _masks(checkpoint) -> dict[str, torch.Tensor]:
    weights = load_file(str(checkpoint / "model.safetensors"))
    return {k: v for k, v in weights.items() if "mask" in k}


@pytest.mark.slow
def test_pruning_under_torchrun_matches_one_process(tiny_corpus, tiny_recipe, tmp_path):
    recipe = tiny_recipe(tiny_corpus, steps=6, eval_every=6)
    recipe["model"]["dropout"] = 0.0  # 2 x 2 rows and 1 x 4 rows draw different dropout masks
    train_baseline(parse_recipe(recipe), tmp_path / "base", progress=False)
    best = tmp_path / "base" / "checkpoints" / "best"
    body = {"prune": [prune_section(criterion="taylor", steps=10)]}
    path = tiny_recipe_file(tmp_path, body, "prune.yaml")
    argv = ["prune", best, "--recipe", path, "--out"]
    _run(cli_command(*argv, tmp_path / "one"))
    _run(_torchrun(*argv, tmp_path / "two"))
    one, two = (tmp_path / n / "u" / "checkpoints" / "last" for n in ("one", "two"))
    masks_one, masks_two = _masks(one), _masks(two)
    assert masks_one and masks_one.keys() == masks_two.keys()
    for name, mask in masks_one.items():
        assert torch.equal(mask, masks_two[name]), name
    rows = [json.loads((tmp_path / n / "results.json").read_text())["rows"] for n in ("one", "two")]
    assert {r["world_size"] for r in rows[1]} == {2}  # it really ran on two ranks
    for a, b in zip(*rows, strict=True):
        assert a["effective_params"] == b["effective_params"]
        assert a["valid_ppl"] == pytest.approx(b["valid_ppl"], rel=1e-3)


@pytest.mark.slow
def test_torchrun_train_twice_is_bit_identical_with_dropout(tiny_corpus, tiny_recipe, tmp_path):
    path = tiny_recipe_file(tmp_path, tiny_recipe(tiny_corpus, steps=6, eval_every=3))
    for name in ("a", "b"):
        _run(_torchrun("train", "--recipe", path, "--out", tmp_path / name))
    for ck in ("best", "last"):
        for f in ("model.safetensors", "extra.safetensors"):
            a = (tmp_path / "a" / "checkpoints" / ck / f).read_bytes()
            assert a == (tmp_path / "b" / "checkpoints" / ck / f).read_bytes(), (ck, f)
