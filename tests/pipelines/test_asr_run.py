"""`prunekit asr` end to end on a handful of synthesized utterances, and `prunekit transcribe`."""

import json
import logging
import wave
from pathlib import Path

import pytest
import torch
from asr_run_helpers import speech_section

from prunekit.asr.transcribe import Transcriber
from prunekit.asr.units import CharUnits
from prunekit.audio.corpus import speech_corpus
from prunekit.audio.featureset import FeatureSet
from prunekit.audio.resample import resample
from prunekit.audio.speech_config import SpeechConfig
from prunekit.audio.wav import load_audio, write_wav
from prunekit.cli.main import main


def test_every_stage_writes_its_results(run):
    _, out = run
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["systems"]) == {"no_lm", "lm", "lm_ilm"}
    for s in m["systems"].values():
        r = s["rates"]
        assert r["all"]["words"] == r["seen_voices"]["words"] + r["unseen_voices"]["words"] > 0
        assert r["all"]["utterances"] == 4 and r["all"]["wer"] >= 0
        assert s["timing"]["threads"] == 1 and s["timing"]["rtf"] > 0
    assert m["systems"]["no_lm"]["timing"]["lm_calls"] == 0
    assert m["systems"]["lm_ilm"]["timing"]["lm_calls"] > 0
    unseen = m["systems"]["no_lm"]["rates"]["unseen_voices"]["utterances"]
    assert m["corpus"]["unseen_test_utterances"] == unseen > 0
    assert set(m["significance"]) == {"lm_vs_no_lm", "lm_ilm_vs_no_lm", "lm_ilm_vs_lm"}
    tuned = json.loads((out / "decode" / "tune-lm_ilm.json").read_text())
    assert tuned["best"] == m["systems"]["lm_ilm"]["params"] and tuned["search"] == "coordinate"
    assert json.loads((out / "decode" / "tune-lm.json").read_text())["best"]["ilm_weight"] == 0
    assert len(m["wer_by_frequency"]["lm"]) == 4
    assert sum(g["ref"] for g in m["wer_by_frequency"]["lm"]) == m["systems"]["lm"]["rates"][
        "all"]["words"]  # fmt: skip
    report = (out / "report.md").read_text()
    for heading in ("## Test WER / CER (%)", "## Significance (MAPSSWE)", "## Decoding speed",
                    "## WER by acoustic difficulty (%)"):  # fmt: skip
        assert heading in report
    hard = m["wer_by_difficulty"]
    assert sum(hard["utterances"]) == m["systems"]["no_lm"]["rates"]["all"]["utterances"]
    assert sum(g["errors"] for g in hard["systems"]["lm"]) == m["systems"]["lm"]["rates"]["all"][
        "word_errors"]  # fmt: skip
    assert (out / "wer.png").stat().st_size > 0
    assert m["command"].startswith("prunekit asr --recipe")


def test_rerun_reuses_every_stage(run, capsys):
    recipe, out = run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name != "metrics.json"}
    assert main(["asr", "--recipe", str(recipe), "--out", str(out), "--no-progress"]) == 0
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after  # nothing retrained, retuned or decoded again
    assert "with LM - ILM: WER" in capsys.readouterr().out


def test_other_settings_in_the_same_folder_are_refused(run, capsys):
    recipe, out = run
    code = main(["asr", "--recipe", str(recipe), "--out", str(out), "--no-progress",
                 "--set", "am.train.lr=0.02"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        f"prunekit asr: error: {out / 'am'} holds an acoustic model made with other settings "
        "(recipe or corpus): pass another --out, or --no-resume to start over"
    ]


@pytest.fixture(scope="module")
def run(asr_run):
    return asr_run


@pytest.fixture(scope="module")
def test_wavs(run, tiny_corpus):
    corpus = speech_corpus(SpeechConfig(**speech_section(tiny_corpus)), progress=False)
    return [u.path for u in corpus.splits["test"]]


def test_transcriber_hears_what_the_pipeline_decoded(run, test_wavs, capsys):
    _, out = run
    lps = FeatureSet.load(out / "logprobs" / "test.safetensors")
    t = Transcriber.load(out / "am" / "checkpoints" / "best")
    lp = t.log_probs(load_audio(test_wavs[0]))
    assert torch.allclose(lp, lps[0], atol=1e-4)
    assert main(["transcribe", str(test_wavs[0]), "--run", str(out), "--no-lm"]) == 0
    assert capsys.readouterr().out == CharUnits().collapse(lps[0].argmax(-1).tolist()) + "\n"
    fused = json.loads((out / "decode" / "test-lm_ilm.json").read_text())["texts"]
    assert main(["transcribe", *map(str, test_wavs), "--run", str(out), "--beam", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{w}: {text}" for w, text in zip(test_wavs, fused, strict=True)]


def test_transcribe_with_named_models_and_weights(run, test_wavs, capsys):
    _, out = run
    tuned = out / "decode" / "tune-lm.json"
    argv = ["transcribe", str(test_wavs[1]), "--am", str(out / "am" / "checkpoints" / "best"),
            "--lm", str(out / "lm" / "checkpoints" / "best"), "--fusion", str(tuned),
            "--beam", "4", "--json"]  # fmt: skip
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"] == json.loads((out / "decode" / "test-lm.json").read_text())["texts"][1]


def _stereo(path: Path) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\x00\x01" * 3200)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "audio file {p} does not exist: pass the path of a wav or flac file"),
        (lambda p: p.write_bytes(b""), "{p} is an empty file: record it again or remove it"),
        (_stereo, "{p} has 2 channels, prunekit needs mono: mix it down with "
                  "`sox {p} -c 1 OUT.wav` (or keep one channel with `remix 1`)"),
        (lambda p: p.write_bytes(b"RIFF\x00\x01garbage" * 10), "{p} is not readable audio"),
    ],
    ids=["missing", "empty", "stereo", "corrupt"],
)  # fmt: skip
def test_bad_audio_is_one_line_exit_2(run, tmp_path, capsys, make, message):
    _, out = run
    bad = tmp_path / "bad.wav"
    if make is not None:
        make(bad)
    code = main(["transcribe", str(bad), "--run", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("prunekit transcribe: error: " + message.format(p=bad))


def test_other_sample_rate_is_resampled_and_said(run, test_wavs, tmp_path, capsys, caplog):
    _, out = run
    wave16 = load_audio(test_wavs[0])
    write_wav(tmp_path / "low.wav", resample(wave16, 16000, 8000), 8000)
    with caplog.at_level(logging.WARNING):
        assert main(["transcribe", str(tmp_path / "low.wav"), "--run", str(out), "--no-lm"]) == 0
    assert f"{tmp_path / 'low.wav'} is 8000 Hz: resampled to 16000 Hz" in caplog.text
    assert capsys.readouterr().out.endswith("\n")


def test_bad_model_arguments(run, test_wavs, tmp_path, capsys):
    _, out = run
    wav = str(test_wavs[0])
    cases = [
        (["--lm", str(out / "lm" / "checkpoints" / "best")],
         "no acoustic model: pass --am CHECKPOINT or --run RUN_FOLDER"),
        (["--am", str(out / "lm" / "checkpoints" / "best")],
         f"{out / 'lm' / 'checkpoints' / 'best'} holds a transformer model, not a CTC acoustic "
         "model: pass the acoustic model's checkpoint (e.g. runs/asr/am/checkpoints/best)"),
        (["--run", str(tmp_path)],
         f"{tmp_path} is not a finished `prunekit asr` folder (no am/checkpoints/best): run "
         f"`prunekit asr --out {tmp_path}` first, or pass --am"),
        (["--am", str(out / "am" / "checkpoints" / "best"), "--ilm", str(out / "lm")],
         "--ilm needs --lm: the internal LM is subtracted from a fused LM"),
        (["--run", str(out), "--lm", str(tmp_path)],
         f"{tmp_path} is not a prunekit checkpoint (no state.json), run folder (no "
         "checkpoints/) or export (no manifest.json): pass e.g. "
         "runs/demo/baseline/checkpoints/best or a folder written by `prunekit export`"),
        (["--run", str(out), "--fusion", str(tmp_path / "none.json")],
         f"fusion file {tmp_path / 'none.json'} cannot be read (FileNotFoundError): pass a JSON "
         'file such as {"lm_weight": 0.5, "ilm_weight": 0.1, "word_bonus": 1.0}'),
    ]  # fmt: skip
    for extra, message in cases:
        code = main(["transcribe", wav, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == [f"prunekit transcribe: error: {message}"], extra
