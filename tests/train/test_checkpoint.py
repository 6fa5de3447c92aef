import random

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_file, save_checkpoint


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


def _trained(model):
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model.head(model.embed(torch.tensor([1, 2]))).sum().backward()
    opt.step()
    return opt


def test_round_trip_restores_model_optimizer_rng_and_ties(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    opt = _trained(model)
    save_checkpoint(
        tmp_path / "ck", model, {"step": 3}, optimizer=opt, extra_tensors={"a": torch.ones(2)}
    )
    expected = (torch.rand(3), np.random.rand(), random.random())

    fresh = Tied()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    state, extra = load_checkpoint(
        tmp_path / "ck", fresh, optimizer=fresh_opt, restore_rng_state=True
    )
    assert state == {"step": 3}
    assert torch.equal(extra["a"], torch.ones(2))
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert fresh.head.weight is fresh.embed.weight
    moments = fresh_opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.random.rand() == expected[1]
    assert random.random() == expected[2]


def test_truncated_weights_file_is_a_clear_error(tmp_path):
    model = Tied()
    save_checkpoint(tmp_path / "ck", model, {})
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    before = model.embed.weight.clone()
    with pytest.raises(PrunekitError, match=r"model.safetensors does not match the sha256"):
        load_checkpoint(tmp_path / "ck", model)
    assert torch.equal(model.embed.weight, before)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(PrunekitError, match="is not a prunekit checkpoint"):
        load_checkpoint(tmp_path, Tied())


def test_checkpoint_of_another_model_is_rejected(tmp_path):
    save_checkpoint(tmp_path / "ck", nn.Linear(2, 3), {})
    with pytest.raises(PrunekitError, match="does not fit this model"):
        load_checkpoint(tmp_path / "ck", nn.Linear(4, 3))


def test_overwrite_leaves_no_temp_folders(tmp_path):
    model = Tied()
    save_checkpoint(tmp_path / "ck", model, {"v": 1})
    save_checkpoint(tmp_path / "ck", model, {"v": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert load_checkpoint(tmp_path / "ck", Tied())[0] == {"v": 2}


def test_checkpoint_carries_extra_files_with_their_sha256(tmp_path):
    save_checkpoint(tmp_path / "ck", Tied(), {"step": 1}, files={"tokenizer.model": b"vocab"})
    assert (tmp_path / "ck" / "tokenizer.model").read_bytes() == b"vocab"
    load_checkpoint(tmp_path / "ck", Tied())  # the extra file does not disturb loading
    assert read_checkpoint_file(tmp_path / "ck", "tokenizer.model") == b"vocab"
    assert read_checkpoint_file(tmp_path / "ck", "other.model") is None
    (tmp_path / "ck" / "tokenizer.model").write_bytes(b"vocaB")
    with pytest.raises(PrunekitError, match=r"tokenizer.model does not match the sha256"):
        read_checkpoint_file(tmp_path / "ck", "tokenizer.model")
    for bad in ("state.json", "model.safetensors", "../x", ".hidden"):
        with pytest.raises(PrunekitError, match="cannot add a file named"):
            save_checkpoint(tmp_path / "c2", Tied(), {}, files={bad: b""})
    assert not (tmp_path / "c2").exists()
