"""`prunekit transcribe AUDIO.wav [more.wav ...]`: print the transcript of each file.

Models come from a `prunekit asr` run folder (`--run runs/asr`: its acoustic model, fused LM,
source LM and tuned fusion weights) or are named one by one (`--am`, `--lm`, `--ilm`). Without an
LM the acoustic model is decoded greedily; with one, by CTC beam search with shallow fusion. Audio
at another sample rate is resampled (and a warning says so); stereo, empty or corrupt files are
refused with one line naming the fix."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from prunekit.asr.beam_search import BeamConfig, FusionParams
from prunekit.asr.transcribe import Transcriber, read_fusion
from prunekit.audio.wav import load_audio
from prunekit.errors import PrunekitError

log = logging.getLogger("prunekit.transcribe")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="print the transcript of audio files",
                       description=__doc__)  # fmt: skip
    p.add_argument("audio", nargs="+", help="wav (or flac) files, mono; 16 kHz or resampled")
    p.add_argument("--run", help="a `prunekit asr` run folder: take every model from it")
    p.add_argument("--am", help="acoustic model: checkpoint or export folder")
    p.add_argument("--lm", help="fused LM: checkpoint, pruned checkpoint or export folder")
    p.add_argument("--lm-tokenizer", help="the LM's tokenizer.model (default: found beside it)")
    p.add_argument("--ilm", help="density-ratio source LM to subtract (needs --lm)")
    p.add_argument("--no-lm", action="store_true", help="with --run: greedy, no LM")
    p.add_argument("--fusion", help="JSON with lm_weight, ilm_weight, word_bonus (or a tuning "
                   "result, e.g. runs/asr/decode/tune-lm_ilm.json)")  # fmt: skip
    p.add_argument("--lm-weight", type=float, help="lambda (default 0.5)")
    p.add_argument("--ilm-weight", type=float, help="mu (default 0.1 with --ilm, else 0)")
    p.add_argument("--word-bonus", type=float, help="beta per word (default 1.0)")
    p.add_argument("--beam", type=int, default=16, help="beam width (default 16)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.set_defaults(func=run)


def _from_run(args: argparse.Namespace) -> None:
    """Fill --am / --lm / --ilm / --fusion from a `prunekit asr` folder where not given."""
    run = Path(args.run)
    if not (run / "am" / "checkpoints" / "best").is_dir():
        raise PrunekitError(
            f"{run} is not a finished `prunekit asr` folder (no am/checkpoints/best): run "
            f"`prunekit asr --out {run}` first, or pass --am"
        )
    args.am = args.am or str(run / "am" / "checkpoints" / "best")
    if args.no_lm:
        return
    metrics = run / "metrics.json"
    given = json.loads(metrics.read_text(encoding="utf-8")).get("lm", {}).get("given") if (
        metrics.is_file()) else None  # fmt: skip
    trained = run / "lm" / "checkpoints" / "best"
    args.lm = args.lm or given or (str(trained) if trained.is_dir() else None)
    ilm = run / "source_lm" / "checkpoints" / "best"
    args.ilm = args.ilm or (str(ilm) if ilm.is_dir() and args.lm else None)
    for name in ("tune-lm_ilm.json", "tune-lm.json") if args.ilm else ("tune-lm.json",):
        if not args.fusion and (run / "decode" / name).is_file():
            args.fusion = str(run / "decode" / name)


def fusion_params(args: argparse.Namespace) -> FusionParams | None:
    """--fusion, then the single-weight flags over it; None = the defaults."""
    base = read_fusion(args.fusion) if args.fusion else None
    flags = {"lm_weight": args.lm_weight, "ilm_weight": args.ilm_weight,
             "word_bonus": args.word_bonus}  # fmt: skip
    given = {k: v for k, v in flags.items() if v is not None}
    if base is None and not given:
        return None
    default = {"lm_weight": 0.5, "ilm_weight": 0.1 if args.ilm else 0.0, "word_bonus": 1.0}
    return FusionParams(**{**(base.to_dict() if base else default), **given})


def run(args: argparse.Namespace) -> int:
    if args.run:
        _from_run(args)
    if not args.am:
        raise PrunekitError("no acoustic model: pass --am CHECKPOINT or --run RUN_FOLDER")
    if args.beam < 1:
        raise PrunekitError(f"--beam {args.beam} must be >= 1")
    waves = [load_audio(path) for path in args.audio]  # bad audio fails before models load
    t = Transcriber.load(
        args.am, lm=args.lm, ilm=args.ilm, params=fusion_params(args),
        beam=BeamConfig(beam_width=args.beam), lm_tokenizer=args.lm_tokenizer,
    )  # fmt: skip
    log.info("decoding with %s", t.describe())
    for path, wave in zip(args.audio, waves, strict=True):
        text = t.transcribe(wave)
        if args.json:
            print(json.dumps({"audio": path, "text": text, "seconds": wave.numel() / 16_000}))
        else:
            print(f"{path}: {text}" if len(args.audio) > 1 else text)
    return 0
