"""`run_asr(recipe, out)`: the speech main job (`prunekit asr`), resumable stage by stage.

    speech corpus (cached) -> log-mel features (cached) -> acoustic model (out/am)
    -> fused LM (out/lm) + density-ratio source LM (out/source_lm)
    -> CTC log-probs of dev and test (out/logprobs)
    -> fusion weights tuned on dev: LM (lambda, beta), LM - ILM (lambda, mu, beta) (out/decode)
    -> test decoded without LM, with LM, with LM - ILM: WER / CER overall and for seen and
       unseen voices, 1-thread real-time factor and the LMs' share, MAPSSWE against no LM,
       WER by word-frequency quartile (out/decode)
    -> out/metrics.json (and `report.md`, written by the CLI)

Training stages resume from their checkpoints and refuse a folder made with other settings;
derived results (log-probs, tuning, decodes) are kept with a fingerprint of everything they
depend on and recomputed when it changes.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from prunekit.asr.beam_search import FusionParams
from prunekit.asr.lm_scorer import WordLM
from prunekit.atomic import write_json
from prunekit.audio.corpus import speech_corpus, with_text_corpus
from prunekit.audio.corpus_features import corpus_features
from prunekit.audio.featureset import FeatureSet
from prunekit.config.asr import AsrRecipe, text_corpus
from prunekit.data.corpus import load_corpus
from prunekit.eval.wer import FrequencyBins, wer_by_difficulty, wer_by_frequency
from prunekit.pipelines.asr import SYSTEMS, acoustic_stage, am_settings, unseen_voices
from prunekit.pipelines.asr_decode import am_log_probs, compare, decode_system, tune, voice_groups
from prunekit.pipelines.asr_lms import fingerprint, fusion_lm, lm_facts, source_lm
from prunekit.report.asr import relative_change

log = logging.getLogger(__name__)

STAGE_DIRS = ("am", "lm", "source_lm", "logprobs", "decode")


class Phases:
    """Announces each phase of the job (one line on stderr, above its progress bars)."""

    def __init__(self, names: list[str], progress: bool = True) -> None:
        self.names, self.progress, self.seconds = names, progress, {}
        self._current: tuple[str, float] | None = None

    def start(self, name: str) -> None:
        self.stop()
        self._current = (name, time.perf_counter())
        msg = f"[{self.names.index(name) + 1}/{len(self.names)}] {name}"
        if self.progress:
            tqdm.write(msg)
        log.info(msg)

    def stop(self) -> None:
        if self._current is not None:
            name, t0 = self._current
            self.seconds[name] = time.perf_counter() - t0
            self._current = None

    def bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit="utt", disable=not self.progress, leave=False)


PHASES = ["speech corpus and features", "acoustic model", "fused LM", "source LM",
          "acoustic scores", "fusion tuning on dev", "test decoding"]  # fmt: skip


def cached(path: Path, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The JSON at `path` if it was computed for `key`; else compute, save and return it."""
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("fingerprint") == key:
            return data
    data = {**compute(), "fingerprint": key}
    write_json(path, data)
    return data


def log_prob_stage(
    model: torch.nn.Module, feats: dict[str, FeatureSet], out: Path, key: str, max_frames: int
) -> dict[str, FeatureSet]:
    """CTC log-probs of dev and test at 1 thread (out/logprobs), recomputed when `key` changes."""
    sets = {}
    for split in ("dev", "test"):
        path = out / f"{split}.safetensors"
        if path.is_file():
            fs = FeatureSet.load(path)
            if fs.meta.get("fingerprint") == key:
                sets[split] = fs
                continue
        fs, _ = am_log_probs(model, feats[split], max_frames=max_frames, threads=1)
        fs.meta["fingerprint"] = key
        fs.save(path)
        sets[split] = fs
    return sets


def clear_run(out: Path) -> None:
    """Remove the stage folders and results of a run folder (--no-resume)."""
    for name in STAGE_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("metrics.json", "report.md"):
        (out / name).unlink(missing_ok=True)


def _lm_key(recipe_section: Any, metrics: dict[str, Any]) -> str:
    return fingerprint({"section": recipe_section, "recipe": metrics.get("recipe"),
                        "given": metrics.get("given"), "steps": metrics.get("steps")})  # fmt: skip


def run_asr(
    recipe: AsrRecipe, out: str | Path, *, resume: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Run (or continue) the speech main job in `out`; return its metrics (module docstring).

    Raises:
        PrunekitError: bad recipe values, a missing synthesizer, a folder made with other
            settings, an LM that cannot be loaded.
    """
    out = Path(out)
    if not resume:
        clear_run(out)
    phases = Phases(PHASES if recipe.source_lm is not None else
                    [p for p in PHASES if p != "source LM"], progress)  # fmt: skip
    phases.start("speech corpus and features")
    speech = with_text_corpus(recipe.speech, text_corpus(recipe))
    corpus = speech_corpus(speech, progress=progress)
    feats = corpus_features(corpus, n_mels=speech.n_mels, progress=progress)
    phases.start("acoustic model")
    am_model, am_metrics = acoustic_stage(recipe.am, feats, out / "am", corpus.key,
                                          progress=progress)  # fmt: skip
    am_key = fingerprint({**am_settings(recipe.am, corpus.key, speech.n_mels),
                          "steps": am_metrics["steps"]})  # fmt: skip
    phases.start("fused LM")
    lm, lm_metrics = fusion_lm(recipe, out, progress=progress)
    ilm = None
    ilm_metrics: dict[str, Any] = {}
    if recipe.source_lm is not None:
        phases.start("source LM")
        ilm, ilm_metrics = source_lm(recipe, feats, out, progress=progress)
    phases.start("acoustic scores")
    lps = log_prob_stage(am_model, feats, out / "logprobs", am_key, recipe.am.eval_max_frames)
    word_lm = WordLM(lm.model, lm.tokenizer)
    word_ilm = WordLM(ilm.model, ilm.tokenizer) if ilm is not None else None
    keys = {
        "lm": _lm_key(recipe.lm.model_dump(mode="json"), lm_metrics),
        "ilm": _lm_key(recipe.source_lm and recipe.source_lm.model_dump(mode="json"), ilm_metrics),
        "decode": {
            k: v for k, v in recipe.decode.model_dump(mode="json").items() if k != "threads"
        },
    }
    phases.start("fusion tuning on dev")
    tuning = tune_stage(lps["dev"], recipe, out / "decode", am_key, keys, word_lm, word_ilm, phases)
    phases.start("test decoding")
    unseen = unseen_voices(feats["test"], feats["train"])
    systems = decode_stage(lps["test"], recipe, out / "decode", [am_key, keys], tuning,
                           voice_groups(lps["test"], unseen), word_lm, word_ilm, phases)  # fmt: skip
    phases.stop()
    facts = {
        "corpus": corpus_facts(corpus, feats, unseen),
        "am": am_facts(am_metrics),
        "lm": lm_facts(lm_metrics),
        "source_lm": lm_facts(ilm_metrics) if ilm_metrics else None,
        "phase_seconds": phases.seconds,
    }
    bins = FrequencyBins.from_text(load_corpus(text_corpus(recipe), text="spoken").train)
    return summarize(recipe, lps["test"], systems, tuning, facts, bins)


def tune_stage(
    dev: FeatureSet,
    recipe: AsrRecipe,
    folder: Path,
    am_key: str,
    keys: dict[str, Any],
    lm: WordLM,
    ilm: WordLM | None,
    phases: Phases,
) -> dict[str, dict[str, Any]]:
    """Fusion weights on dev: "lm" (mu = 0), then "lm_ilm" starting from the "lm" optimum."""
    out: dict[str, dict[str, Any]] = {}
    start = None
    for name, with_ilm in (("lm", False), ("lm_ilm", True)):
        if with_ilm and ilm is None:
            continue
        key = fingerprint([am_key, keys, name])
        bar = phases.bar(0, f"tune on dev ({name})")

        def compute(with_ilm=with_ilm, start=start, bar=bar) -> dict[str, Any]:
            result, seconds = tune(
                dev, recipe.decode, lm=lm, ilm=ilm if with_ilm else None, start=start,
                on_utterance=bar.update,
            )  # fmt: skip
            return {**result.to_dict(), "seconds": seconds, "search": recipe.decode.search}

        out[name] = cached(folder / f"tune-{name}.json", key, compute)
        bar.close()
        start = FusionParams.from_dict(out[name]["best"])
    return out


def decode_stage(
    test: FeatureSet,
    recipe: AsrRecipe,
    folder: Path,
    key: list[Any],
    tuning: dict[str, dict[str, Any]],
    groups: dict[str, list[int]],
    lm: WordLM,
    ilm: WordLM | None,
    phases: Phases,
) -> dict[str, dict[str, Any]]:
    """Test decoded without an LM, with the LM, and with LM - ILM (tuned weights)."""
    systems = {}
    for name in SYSTEMS if ilm is not None else SYSTEMS[:2]:
        params = FusionParams.from_dict(tuning[name]["best"]) if name in tuning else None
        bar = phases.bar(len(test), f"decode test ({name})")

        def compute(name=name, params=params, bar=bar) -> dict[str, Any]:
            return decode_system(
                test, recipe.decode, groups, lm=lm if name != "no_lm" else None,
                ilm=ilm if name == "lm_ilm" else None, params=params, on_utterance=bar.update,
            )  # fmt: skip

        fp = fingerprint([*key, name, params and params.to_dict()])
        systems[name] = cached(folder / f"test-{name}.json", fp, compute)
        bar.close()
    return systems


def corpus_facts(corpus: Any, feats: dict[str, FeatureSet], unseen: set[str]) -> dict[str, Any]:
    """Sizes, voices and build time of the speech corpus."""
    return {
        "name": corpus.name,
        "key": corpus.key,
        "path": str(corpus.root),
        "utterances": {s: len(fs) for s, fs in feats.items()},
        "hours": {s: float(fs.lengths.sum()) / 360_000 for s, fs in feats.items()},
        "build_seconds": corpus.meta.get("build_seconds"),
        "unseen_test_voices": sorted(unseen),
        "unseen_test_utterances": sum(v in unseen for v in feats["test"].voices),
    }


def am_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """The acoustic model's numbers a report shows (greedy rates included)."""
    keys = ("params", "nonzero_params", "steps", "epochs", "train_seconds",
            "train_frames_per_second", "best_valid_loss_per_char", "flops_per_output_frame",
            "threads", "greedy", "am", "history")  # fmt: skip
    return {k: metrics[k] for k in keys if k in metrics}


def summarize(
    recipe: AsrRecipe,
    test: FeatureSet,
    systems: dict[str, dict[str, Any]],
    tuning: dict[str, dict[str, Any]],
    facts: dict[str, Any],
    bins: FrequencyBins,
) -> dict[str, Any]:
    """metrics.json of the job: per system rates and timing, changes vs no LM, significance."""
    refs, base = test.texts, systems["no_lm"]
    out: dict[str, Any] = {"name": recipe.name, "recipe": recipe.model_dump(mode="json"), **facts}
    out["tuning"] = {k: {"best": v["best"], "dev_wer": v["best_wer"], "points": len(v["grid"]),
                         "seconds": v.get("seconds")} for k, v in tuning.items()}  # fmt: skip
    out["systems"] = {k: {kk: v[kk] for kk in ("params", "rates", "timing")}
                      for k, v in systems.items()}  # fmt: skip
    out["wer_change_vs_no_lm"] = {
        name: {g: relative_change(s["rates"][g]["wer"], base["rates"][g]["wer"])
               for g in s["rates"]}
        for name, s in systems.items() if name != "no_lm"
    }  # fmt: skip
    out["significance"] = {
        f"{name}_vs_no_lm": compare(refs, s["texts"], base["texts"])
        for name, s in systems.items() if name != "no_lm"
    }  # fmt: skip
    if "lm_ilm" in systems:
        out["significance"]["lm_ilm_vs_lm"] = compare(
            refs, systems["lm_ilm"]["texts"], systems["lm"]["texts"]
        )
    out["wer_by_frequency"] = {
        name: [c.to_dict() for c in wer_by_frequency(refs, s["texts"], bins)]
        for name, s in systems.items()
    }
    out["wer_by_difficulty"] = wer_by_difficulty(refs, base["texts"], {
        name: s["texts"] for name, s in systems.items()
    })  # fmt: skip
    out["examples"] = [
        {"ref": refs[i], **{name: s["texts"][i] for name, s in systems.items()}}
        for i in range(min(6, len(refs)))
    ]
    return out
