"""A full disk (a small tmpfs, or RLIMIT_FSIZE where mounting is not allowed) gives one line and
exit 2, leaves the last good checkpoint intact, and after space is freed the rerun finishes with
exactly the uninterrupted result (`make test-faults`)."""

import contextlib
import os
import resource
import shutil
import subprocess

import pytest
from fault_harness import integrity_problems, run_to_end
from reliability_helpers import (
    cli_command,
    cli_env,
    one_line_error,
    prune_section,
    record,
    run_differences,
    tiny_recipe_file,
)

from prunekit.cli.export import load_pruned

pytestmark = [pytest.mark.slow, pytest.mark.faults]


@contextlib.contextmanager
def tmpfs(folder, size_bytes: int):
    """Mount a tmpfs of `size_bytes` at `folder` (skip when this process may not mount)."""
    folder.mkdir(parents=True)
    size = f"size={(size_bytes // 4096 + 1) * 4096}"
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(folder)]).returncode:
        pytest.skip("this root may not mount a tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _grow(folder, size_bytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_bytes}", str(folder)], check=True)


def _checkpoint_bytes(folder) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


@pytest.fixture(scope="module")
def setup(tiny_corpus, tiny_recipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("full-disk")
    recipe = tiny_recipe(tiny_corpus, steps=12, eval_every=4, checkpoint_every=2)
    recipe["prune"] = [prune_section(steps=8)]
    path = tiny_recipe_file(root, recipe)
    ref = run_to_end(["train", "--recipe", str(path)], root / "train")
    assert ref.returncode == 0, ref.stderr[-2000:]
    best = root / "train" / "checkpoints" / "best"
    ref_prune = run_to_end(["prune", str(best), "--recipe", str(path)], root / "prune")
    assert ref_prune.returncode == 0, ref_prune.stderr[-2000:]
    return path, root, _checkpoint_bytes(best)


@pytest.mark.parametrize("command", ["train", "prune"])
def test_full_tmpfs_is_one_line_and_keeps_the_last_good_checkpoint(setup, tmp_path, command):
    path, root, ckpt = setup
    best = root / "train" / "checkpoints" / "best"
    argv = ["train", "--recipe", str(path)]
    if command == "prune":
        argv = ["prune", str(best), "--recipe", str(path)]
    with tmpfs(tmp_path / "disk", int(2.6 * ckpt)) as disk:  # two checkpoints fit, not three
        out = disk / "run"
        proc = run_to_end(argv, out)
        line = one_line_error(proc)
        record(
            "full disk",
            f"prunekit {command}, tmpfs of 2.6 checkpoints",
            line or proc.stderr[-300:],
            bool(line),
        )
        assert line is not None, proc.stderr[-2000:]
        assert "(No space left on device)" in line
        assert integrity_problems(out) == []
        kept = [p.parent for p in out.rglob("state.json") if not p.parent.name.startswith(".")]
        assert kept, "no checkpoint survived"
        for checkpoint in kept:
            load_pruned(checkpoint)  # sha256, finiteness and shapes verified
        assert not [p for p in out.rglob(".*") if p.is_dir()]  # no temp folder left behind
        _grow(disk, 64 * ckpt)
        rerun = run_to_end(argv, out)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        diffs = run_differences(root / command, out)
        record(
            "full disk",
            f"prunekit {command} rerun after freeing space",
            f"{len(diffs)} differences",
            not diffs,
        )
        assert diffs == []


def test_file_size_limit_is_one_line(setup, tmp_path):
    """Without root: RLIMIT_FSIZE below one checkpoint file (Python ignores SIGXFSZ: EFBIG)."""
    path, _, ckpt = setup

    def limit():
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (ckpt // 3, hard))

    cmd = cli_command("train", "--recipe", path, "--out", tmp_path / "run")
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, preexec_fn=limit)
    line = one_line_error(proc)
    record(
        "full disk",
        "prunekit train, RLIMIT_FSIZE a third of a checkpoint",
        line or proc.stderr[-300:],
        bool(line),
    )
    assert line is not None and "(File too large)" in line, proc.stderr[-2000:]
    assert integrity_problems(tmp_path / "run") == []
