"""`prunekit speech-data` in-process."""

import json

from prunekit.cli.main import main


def _sets(cfg) -> list[str]:
    pairs = {
        "speech.corpus": cfg.corpus,
        "speech.train_utterances": cfg.train_utterances,
        "speech.dev_utterances": cfg.dev_utterances,
        "speech.test_utterances": cfg.test_utterances,
        "speech.max_words": cfg.max_words,
        "speech.workers": cfg.workers,
        "speech.n_mels": cfg.n_mels,
        "speech.engines": "{espeak-ng: 1.0, flite: 1.0}",
    }
    return [arg for k, v in pairs.items() for arg in ("--set", f"{k}={v}")]


def test_describes_the_built_corpus(tiny_speech, tiny_speech_cfg, capsys):
    assert main(["speech-data", "--no-progress", *_sets(tiny_speech_cfg)]) == 0
    out = capsys.readouterr().out
    assert f"speech corpus {tiny_speech.name}: {tiny_speech.root}" in out
    assert "train            4" in out and "test             4" in out
    assert (
        f"{len(tiny_speech.meta['unseen_speakers'])} test speakers never heard in training" in out
    )
    assert "build: " in out and "session(s) with 1 worker(s)" in out


def test_json_with_features(tiny_speech, tiny_speech_cfg, capsys):
    argv = ["speech-data", "--no-progress", "--features", "--json", *_sets(tiny_speech_cfg)]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["path"] == str(tiny_speech.root) and d["splits"]["dev"]["utterances"] == 2
    assert d["splits"]["test"]["unseen_utterances"] == sum(
        u.unseen for u in tiny_speech.splits["test"]
    )
    assert d["features"]["n_mels"] == 40 and d["features"]["frames"]["train"] > 0


def test_bad_source_is_one_line_exit_2(tmp_path, capsys):
    code = main(["speech-data", "--set", f"speech.source={tmp_path / 'none'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == (
        f"prunekit speech-data: error: speech source {tmp_path / 'none'} does not exist: "
        "pass a folder or CSV of recordings (or 'synthetic')"
    )


def test_bad_speech_key(capsys):
    assert main(["speech-data", "--set", "speech.voices=3"]) == 2
    err = capsys.readouterr().err
    assert "recipe key 'speech.voices' is not known: remove it or fix its spelling" in err
