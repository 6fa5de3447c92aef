"""How the shallow-fusion gain depends on the beam width, on a finished `prunekit asr` run.

    python scripts/asr_beam_check.py runs/asr runs/asr-bench/lms/baseline 16,32,64 out.json

For each beam width: the no-LM beam search on test, then the fusion weights tuned on the first 100
dev utterances (coordinate search over lambda x beta, no ILM) and test decoded with them; WER per
voice group and the relative change against the no-LM search of the same width. 1 thread.
Writes out.json and out.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from prunekit.asr.lm_scorer import WordLM
from prunekit.asr.load_lm import load_lm
from prunekit.atomic import write_json, write_text
from prunekit.audio.featureset import FeatureSet
from prunekit.bench.markdown import bench_header
from prunekit.config.asr import DecodeSection
from prunekit.machine import machine_info
from prunekit.pipelines.asr_decode import decode_system, tune, voice_groups
from prunekit.report.asr import relative_change
from prunekit.runtime import fast_decoder

LAMBDAS = [0.2, 0.3, 0.5, 0.8]
BETAS = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def main(asr_dir: str, lm_dir: str, beams: str, out: str) -> None:
    torch.set_num_threads(1)
    asr = Path(asr_dir)
    dev = FeatureSet.load(asr / "logprobs" / "dev.safetensors")
    test = FeatureSet.load(asr / "logprobs" / "test.safetensors")
    unseen = json.loads((asr / "metrics.json").read_text())["corpus"]["unseen_test_voices"]
    groups = voice_groups(test, set(unseen))
    loaded = load_lm(lm_dir)
    lm = WordLM(fast_decoder(loaded.model), loaded.tokenizer)
    result = {"command": "python scripts/asr_beam_check.py " + " ".join(sys.argv[1:]),
              "machine": machine_info(), "beams": {}}  # fmt: skip
    for beam in (int(b) for b in beams.split(",")):
        cfg = DecodeSection(beam_width=beam, lm_weight=LAMBDAS, ilm_weight=[0.0],
                            word_bonus=BETAS, tune_utterances=100)  # fmt: skip
        started = time.perf_counter()
        base = decode_system(test, cfg, groups)["rates"]
        tuning, tune_seconds = tune(dev, cfg, lm=lm)
        fused = decode_system(test, cfg, groups, lm=lm, params=tuning.best)
        result["beams"][str(beam)] = {
            "best": tuning.best.to_dict(),
            "dev_wer": tuning.best_wer,
            "no_lm_wer": {g: r["wer"] for g, r in base.items()},
            "fused_wer": {g: r["wer"] for g, r in fused["rates"].items()},
            "relative_change": {
                g: relative_change(fused["rates"][g]["wer"], r["wer"]) for g, r in base.items()
            },
            "decode_rtf": fused["timing"]["rtf"],
            "tune_seconds": tune_seconds,
            "seconds": time.perf_counter() - started,
        }
        print(beam, json.dumps(result["beams"][str(beam)]), flush=True)
        write_json(Path(out), result)
        write_text(Path(out).with_suffix(".md"), to_markdown(result))


def to_markdown(result: dict[str, Any]) -> str:
    """One row per beam width: tuned weights, dev WER, test WER without / with the LM by voices."""
    lines = [
        *bench_header(
            "Shallow-fusion gain vs beam width",
            result["command"],
            result["machine"],
            "Test WER %; fused weights tuned on the first 100 dev utterances; no ILM; 1 thread.",
        ),  # fmt: skip
        "| beam | lambda, beta | dev WER fused | no LM all / seen / unseen | fused all / seen / "
        "unseen | change unseen | decode RTF fused | minutes |",
        "|---:|---|---:|---|---|---:|---:|---:|",
    ]
    groups = ("all", "seen_voices", "unseen_voices")
    for beam, r in sorted(result["beams"].items(), key=lambda kv: int(kv[0])):
        no_lm = " / ".join(f"{100 * r['no_lm_wer'][g]:.2f}" for g in groups)
        fused = " / ".join(f"{100 * r['fused_wer'][g]:.2f}" for g in groups)
        lines.append(
            f"| {beam} | {r['best']['lm_weight']:g}, {r['best']['word_bonus']:g} | "
            f"{100 * r['dev_wer']:.2f} | {no_lm} | {fused} | "
            f"{100 * r['relative_change']['unseen_voices']:+.1f} % | {r['decode_rtf']:.3f} | "
            f"{r['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(*sys.argv[1:5])
