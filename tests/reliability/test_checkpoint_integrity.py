"""Checkpoints carry the sha256 of their files; edits, kills between renames, full disks and the
umask are handled; every refusal is one line naming the file and the fix."""

import json
import os
import resource
import stat

import pytest
import torch
from reliability_helpers import record
from torch import nn

from prunekit.atomic import write_json, write_with
from prunekit.cli.main import main
from prunekit.errors import PrunekitError
from prunekit.export.compact import compact
from prunekit.export.io import save_compact
from prunekit.models import build_model
from prunekit.train.checkpoint import load_checkpoint, read_checkpoint_state, save_checkpoint


class Net(nn.Module):
    def __init__(self, d: int = 16):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, 3)

    def forward(self, x):
        return self.b(self.a(x))


def _flip(path, offset_from_end: int, n: int = 8) -> None:
    """Flip `n` bytes inside the tensor data (the header, at the start, stays valid)."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) - offset_from_end, len(data) - offset_from_end + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.safetensors", "extra.safetensors"])
def test_flipped_bytes_are_caught_by_the_sha256(tmp_path, name):
    model = Net()
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 16)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "ck", model, {"step": 1}, optimizer=opt)
    _flip(tmp_path / "ck" / name, 40)
    fresh = Net()
    before = [p.clone() for p in fresh.parameters()]
    with pytest.raises(PrunekitError) as err:
        load_checkpoint(tmp_path / "ck", fresh, optimizer=torch.optim.AdamW(fresh.parameters()))
    message = str(err.value)
    record("corruption", f"8 flipped bytes in {name}", message, "sha256" in message)
    assert f"{name} does not match the sha256 in its state.json" in message
    assert "delete the checkpoint" in message
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters(), strict=True))


def test_state_json_edited_to_another_shape_names_the_tensor_and_both_shapes(
    tiny_baseline, tmp_path, capsys
):
    _, best = tiny_baseline
    ck = tmp_path / "ck"
    ck.mkdir()
    for f in best.iterdir():
        (ck / f.name).write_bytes(f.read_bytes())
    meta = json.loads((ck / "state.json").read_text())
    meta["state"]["model_config"]["d_model"] = 48
    (ck / "state.json").write_text(json.dumps(meta))
    code = main(["eval", str(ck), "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    record("corruption", "state.json edited to d_model 48", err[-1] if err else "", code == 2)
    assert code == 2 and len(err) == 1
    assert (
        "tensor 'blocks.0.attn.k_proj.bias' has shape [32] in model.safetensors but [48]" in err[0]
    )


def test_a_kill_between_the_two_renames_keeps_the_previous_checkpoint(tmp_path):
    model = Net()
    save_checkpoint(tmp_path / "last", model, {"step": 1})
    os.replace(tmp_path / "last", tmp_path / ".last.old")  # what the kill leaves
    (tmp_path / ".last.x1y2").mkdir()  # and the new one, complete or not, under its temp name
    assert read_checkpoint_state(tmp_path / "last")["state"] == {"step": 1}
    assert load_checkpoint(tmp_path / "last", Net())[0] == {"step": 1}


def test_a_kill_before_the_old_copy_was_removed_does_not_block_the_next_save(tmp_path):
    model = Net()
    save_checkpoint(tmp_path / "last", model, {"step": 1})
    save_checkpoint(tmp_path / ".last.old", model, {"step": 0})  # left by a kill
    (tmp_path / ".last.abcd").mkdir()  # a temp folder of a killed write
    save_checkpoint(tmp_path / "last", model, {"step": 2})
    assert load_checkpoint(tmp_path / "last", Net())[0] == {"step": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_format_1_checkpoint_without_hashes_still_loads(tmp_path):
    model = Net()
    save_checkpoint(tmp_path / "ck", model, {"step": 1})
    meta = json.loads((tmp_path / "ck" / "state.json").read_text())
    meta["format_version"] = 1
    del meta["files"]
    (tmp_path / "ck" / "state.json").write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path / "ck", Net())[0] == {"step": 1}
    meta["format_version"] = 2  # but a format-2 one without its hashes is corrupt
    (tmp_path / "ck" / "state.json").write_text(json.dumps(meta))
    with pytest.raises(PrunekitError, match=r"is corrupt \(no sha256 for extra.safetensors\)"):
        load_checkpoint(tmp_path / "ck", Net())


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_results_follow_the_umask(tmp_path, umask_027):
    save_checkpoint(tmp_path / "ck", Net(), {})
    write_json(tmp_path / "m.json", {"a": 1})
    write_with(tmp_path / "p.png", lambda tmp: tmp.write_bytes(b"\x89PNG"))
    assert _mode(tmp_path / "ck") == 0o750
    assert {_mode(f) for f in (tmp_path / "ck").iterdir()} == {0o640}
    assert _mode(tmp_path / "m.json") == _mode(tmp_path / "p.png") == 0o640
    cfg = {"arch": "rnn", "vocab_size": 7, "d_embed": 4, "d_hidden": 4, "n_layer": 1}
    model = build_model(cfg)
    small, manifest = compact(model, dense=True, sparse="dense", dense_layout="rows", repeats=1)
    save_compact(small, manifest, tmp_path / "export")
    assert _mode(tmp_path / "export") == 0o750
    assert {_mode(f) for f in (tmp_path / "export").iterdir()} == {0o640}


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    small = Net(8)
    save_checkpoint(tmp_path / "last", small, {"step": 1})
    write_json(tmp_path / "m.json", {"ok": 1})
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limit[1]))
    try:
        with pytest.raises(PrunekitError) as err:
            save_checkpoint(tmp_path / "last", Net(256), {"step": 2})  # 256 KiB of weights
        with pytest.raises(PrunekitError, match=r"could not write .*m.json \(File too large\)"):
            write_json(tmp_path / "m.json", {"big": "x" * 100_000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    message = str(err.value)
    record("full disk", "RLIMIT_FSIZE 64 KiB, in-process save_checkpoint", message, True)
    assert message.startswith(f"could not write {tmp_path / 'last'} (File too large): ")
    assert load_checkpoint(tmp_path / "last", Net(8))[0] == {"step": 1}
    assert json.loads((tmp_path / "m.json").read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "m.json"]


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = tmp_path / ".m.json.999999999.abcd.tmp"  # no such pid
    alive = tmp_path / f".m.json.{os.getppid()}.efgh.tmp"  # a live writer's: left alone
    dead.write_text("{")
    alive.write_text("{")
    write_json(tmp_path / "m.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "m.json"]
