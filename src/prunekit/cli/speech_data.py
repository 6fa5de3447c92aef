"""`prunekit speech-data`: build (once, cached) and describe the recipe's speech corpus: hours and
utterances per split, training and unseen test voices, where it is cached, how long it took.
The default corpus is synthesized offline from the LM corpus's text (espeak-ng, flite, festival);
set `speech.source` to a folder or CSV of recordings to use your own."""

from __future__ import annotations

import argparse
import json
from typing import Any

from prunekit.cli.common import add_recipe_args, recipe_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "speech-data", help="build and describe the speech corpus", description=__doc__
    )
    add_recipe_args(p)
    p.add_argument("--features", action="store_true", help="also compute the log-mel features")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.add_argument(
        "--engine-speed",
        action="store_true",
        help="instead: time each synthesizer (audio seconds per CPU second) and exit",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def describe(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or load) the corpus, and its features with --features; return the facts to print."""
    from prunekit.audio.corpus import speech_corpus, with_text_corpus
    from prunekit.audio.corpus_features import corpus_features, features_dir
    from prunekit.audio.features import LogMel

    cfg = recipe_from_args(args)
    speech = with_text_corpus(cfg.speech, cfg.data.corpus)
    corpus = speech_corpus(speech, progress=args.progress)
    splits = {}
    for name, utts in corpus.splits.items():
        hours = corpus.hours(name)
        splits[name] = {
            "utterances": len(utts),
            "hours": hours,
            "speakers": len({u.speaker for u in utts}),
            "unseen_utterances": sum(u.unseen for u in utts),
        }
    out: dict[str, Any] = {
        "name": corpus.name,
        "path": str(corpus.root),
        "key": corpus.key,
        "splits": splits,
        "train_speakers": corpus.meta.get("train_speakers", []),
        "unseen_speakers": corpus.meta.get("unseen_speakers", []),
        "engines": corpus.meta.get("summary", {}).get("engines", {}),
        "build_seconds": corpus.meta.get("build_seconds"),
        "build_sessions": corpus.meta.get("build_sessions"),
        "workers": corpus.meta.get("workers"),
    }
    if args.features:
        feats = corpus_features(corpus, n_mels=speech.n_mels, progress=args.progress)
        out["features"] = {
            "path": str(features_dir(corpus, LogMel(n_mels=speech.n_mels))),
            "frames": {s: int(fs.feats.shape[0]) for s, fs in feats.items()},
            "hours": {s: fs.meta["seconds"] / 3600 for s, fs in feats.items()},
            "n_mels": speech.n_mels,
        }
    return out


def format_description(d: dict[str, Any]) -> str:
    """The human-readable report of `describe`."""
    lines = [f"speech corpus {d['name']}: {d['path']}", "split   utterances   hours   speakers"]
    for name, s in d["splits"].items():
        hours = (
            s["hours"]
            if s["hours"] is not None
            else d.get("features", {}).get("hours", {}).get(name)
        )
        shown = f"{hours:7.2f}" if hours is not None else "      ?"
        extra = f"   ({s['unseen_utterances']} by unseen voices)" if name == "test" else ""
        lines.append(f"{name:<7} {s['utterances']:>10}  {shown}   {s['speakers']:>8}{extra}")
    unseen = d["unseen_speakers"]
    lines.append(
        f"voices: {len(d['train_speakers'])} training speakers; {len(unseen)} test speakers never "
        f"heard in training ({', '.join(unseen[:6])}{', ...' if len(unseen) > 6 else ''})"
    )
    if d["engines"]:
        lines.append("engines: " + ", ".join(f"{e} {n} utt" for e, n in d["engines"].items()))
    if d["build_seconds"] is not None:
        lines.append(
            f"build: {d['build_seconds']:.0f} s wall in {d['build_sessions']} session(s) with "
            f"{d['workers']} worker(s) (cached: later calls load it)"
        )
    if "features" in d:
        f = d["features"]
        frames = ", ".join(f"{s} {n:,}" for s, n in f["frames"].items())
        lines.append(f"features: {f['n_mels']} log-mels, frames {frames}: {f['path']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.engine_speed:
        from prunekit.audio.engine_speed import engine_speed

        rows = engine_speed()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print("voice                                   audio s   cpu s   audio s per cpu s")
            for r in rows:
                print(
                    f"{r['voice']:<38} {r['audio_seconds']:8.1f} {r['cpu_seconds']:7.2f} "
                    f"{r['x_realtime_cpu']:10.1f}"
                )
        return 0
    d = describe(args)
    print(json.dumps(d, indent=2) if args.json else format_description(d))
    return 0
