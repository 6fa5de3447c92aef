"""A real parallel build killed with SIGKILL: no orphan workers, and the next build finishes it."""

import os
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import sys
from prunekit.audio.corpus import speech_corpus
from prunekit.audio.speech_config import SpeechConfig
cfg = SpeechConfig(corpus=sys.argv[1], train_utterances=30, dev_utterances=2, test_utterances=2,
                   max_words=12, workers=2, engines={"espeak-ng": 1.0, "flite": 1.0})
c = speech_corpus(cfg, progress=False)
print(c.root, c.meta["build_sessions"])
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie counts as gone
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.slow
def test_sigkilled_parallel_build_resumes(tiny_corpus, tmp_path):
    env = {**os.environ, "PRUNEKIT_CACHE": str(tmp_path)}
    cmd = [sys.executable, "-c", SCRIPT, str(tiny_corpus)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(list(tmp_path.rglob("wav/train/*.wav"))) < 5:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    workers = [int(p) for p in children.stdout.split()]
    assert len(workers) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(3)
    assert not [p for p in workers if _alive(p)]  # workers noticed and left
    assert not list(tmp_path.rglob("manifest.jsonl"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    root, sessions = done.stdout.split()
    assert sessions == "2"
    assert len(list((tmp_path / root).rglob("wav/*/*.wav"))) == 30 + 2 + 2 + 2
