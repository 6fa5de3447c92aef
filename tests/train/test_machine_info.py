import subprocess

from prunekit.machine import machine_info


def test_machine_info_names_the_commit_and_whether_the_checkout_was_dirty(tmp_path, monkeypatch):
    info = machine_info()
    assert info["cores"] >= 1 and info["torch"] and info["git_dirty"] in (True, False, None)
    monkeypatch.chdir(tmp_path)  # not a git checkout
    outside = machine_info()
    assert outside["git_commit"] == "unknown" and outside["git_dirty"] is None
    subprocess.run(["git", "init", "-q"], check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(["git", "add", "f.txt"], check=True)
    cfg = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *cfg, "commit", "-qm", "x"], check=True)
    assert machine_info()["git_dirty"] is False
    (tmp_path / "f.txt").write_text("b")
    assert machine_info()["git_dirty"] is True
