"""The acoustic-model pipeline: feature sets -> CTC model -> trained checkpoint -> greedy WER / CER.

`train_acoustic_model(cfg.am, feats, out_dir)` takes the "train", "dev" (and "test") FeatureSets
of a speech corpus, trains the recipe's CTC model with the shared Trainer (checkpoints, exact
resume, torchrun DDP), reloads the best checkpoint and reports greedy (no LM) WER / CER per split,
and per split also for the voices seen in training and the unseen ones.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.asr.ctc_task import CTCTask
from prunekit.asr.greedy import error_rates, greedy_error_rates
from prunekit.atomic import write_json
from prunekit.audio.featureset import FeatureSet
from prunekit.config.asr import AcousticSection
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.eval.size import size_report
from prunekit.models import build_model
from prunekit.train.checkpoint import load_checkpoint
from prunekit.train.distributed import World, barrier
from prunekit.train.trainer import Trainer

log = logging.getLogger(__name__)


def _check_splits(feats: dict[str, FeatureSet], needed: tuple[str, ...]) -> None:
    missing = [s for s in needed if s not in feats]
    if missing:
        raise PrunekitError(
            f"speech features lack the split(s) {missing}: pass a dict with keys "
            f"{list(needed)} (as speech_features returns)"
        )


def build_acoustic_model(cfg: AcousticSection, n_mels: int) -> nn.Module:
    """Build the recipe's CTC model for `n_mels` features, seeded by train.seed."""
    model_cfg = {"arch": "ctc", **cfg.model, "n_mels": n_mels}
    if "n_mels" in cfg.model and cfg.model["n_mels"] != n_mels:
        raise PrunekitError(
            f"am.model.n_mels={cfg.model['n_mels']} but the features have {n_mels} mels: "
            "remove am.model.n_mels (it follows the features) or rebuild the features"
        )
    torch.manual_seed(cfg.train.seed)
    return build_model(model_cfg)


def ctc_task(cfg: AcousticSection, feats: dict[str, FeatureSet]) -> CTCTask:
    """The Trainer's task: `feats["train"]` batches by the frame budget, dev loss on `feats["dev"]`."""
    _check_splits(feats, ("train", "dev"))
    return CTCTask(
        feats["train"],
        feats["dev"],
        max_frames=cfg.max_frames,
        eval_max_frames=cfg.eval_max_frames,
        min_batch=cfg.min_batch,
        specaugment=cfg.specaugment,
        sortagrad=cfg.sortagrad,
    )


def unseen_voices(fs: FeatureSet, train: FeatureSet) -> set[str]:
    """Voices of `fs` that training never heard: `fs.meta["unseen_voices"]` when the corpus
    says so, else those absent from `train.voices`."""
    if "unseen_voices" in fs.meta:
        return set(fs.meta["unseen_voices"])
    return set(fs.voices) - set(train.voices)


def evaluate_acoustic_model(
    model: nn.Module, feats: dict[str, FeatureSet], *, max_frames: int = 24_000
) -> dict[str, Any]:
    """Greedy WER / CER of every split but train, overall and by seen / unseen voices.

    Returns:
        {split: {"all": rates, "seen_voices": rates, "unseen_voices": rates, "unseen": [names],
        "examples": [first 5 (reference, hypothesis)]}}; rates as `prunekit.asr.greedy.error_rates`.
    """
    _check_splits(feats, ("train",))
    out: dict[str, Any] = {}
    for split, fs in feats.items():
        if split == "train":
            continue
        rates, hyps = greedy_error_rates(model, fs, max_frames=max_frames)
        unseen = unseen_voices(fs, feats["train"])
        entry: dict[str, Any] = {"all": rates, "unseen": sorted(unseen)}
        for name, keep in (("seen_voices", False), ("unseen_voices", True)):
            idx = [i for i, v in enumerate(fs.voices) if (v in unseen) == keep]
            refs = [fs.texts[i] for i in idx]
            entry[name] = error_rates(refs, [hyps[i] for i in idx])
        entry["examples"] = [[fs.texts[i], hyps[i]] for i in range(min(5, len(fs)))]
        out[split] = entry
    return out


def train_acoustic_model(
    cfg: AcousticSection,
    feats: dict[str, FeatureSet],
    out_dir: str | Path,
    *,
    world: World = World(),
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the recipe's CTC model on feats["train"] (dev loss on feats["dev"]), then evaluate.

    Resumes from out_dir/checkpoints/last when it exists (and `resume`). The global feature mean
    and deviation of the training set are stored in the model (buffers), so the checkpoint carries
    them. Returns the metrics (written to out_dir/metrics.json on the main rank; other ranks
    return the training facts without the greedy evaluation).
    """
    out_dir = Path(out_dir)
    torch.set_num_threads(cfg.train.threads)
    task = ctc_task(cfg, feats)
    model = build_acoustic_model(cfg, feats["train"].feats.shape[1])
    model.set_feature_stats(task.mean, task.std)
    trainer = Trainer(
        model, task, cfg.train, out_dir, world=world, progress=progress,
        run_state={"am": cfg.model_dump(mode="json")},
    )  # fmt: skip
    last = trainer.checkpoint_dir / "last"
    if resume and last.exists():
        log.info("resuming from %s", last)
        trainer.resume(last)
    started = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - started
    barrier(world)  # rank 0 writes the checkpoints
    load_checkpoint(trainer.checkpoint_dir / "best", model)
    metrics: dict[str, Any] = {
        "steps": trainer.step,
        "best_valid_loss_per_char": history.best_valid_loss,
        "frames_seen": history.tokens_seen,
        "train_seconds": history.train_seconds,
        "train_frames_per_second": history.tokens_seen / max(1e-9, history.train_seconds),
        "wall_seconds_this_call": wall,
        "epochs": trainer.step / len(task),
        "batches_per_epoch": len(task),
        "utterances": {s: len(fs) for s, fs in feats.items()},
        "hours": {s: float(fs.lengths.sum()) / 360_000 for s, fs in feats.items()},
        "threads": cfg.train.threads,
        "world_size": world.size,
        "history": {"train": history.train, "valid": history.valid},
        "am": cfg.model_dump(mode="json"),
        "flops_per_output_frame": flops_per_token(model, 1),  # 40 ms of audio
        **size_report(model),
    }
    if world.is_main:
        metrics["greedy"] = evaluate_acoustic_model(model, feats, max_frames=cfg.eval_max_frames)
        write_json(out_dir / "metrics.json", metrics)
    return metrics


# ------------------------------------------------------------------ the main job (`prunekit asr`)

FREE_AM_TRAIN_KEYS = ("threads", "log_every", "eval_batch_size", "checkpoint_every")
FREE_AM_KEYS = ("eval_max_frames",)
SYSTEMS = ("no_lm", "lm", "lm_ilm")


def am_settings(cfg: AcousticSection, corpus_key: str, n_mels: int) -> dict[str, Any]:
    """What a trained acoustic model depends on (thread counts and the like left out)."""
    am = cfg.model_dump(mode="json")
    am["train"] = {k: v for k, v in am["train"].items() if k not in FREE_AM_TRAIN_KEYS}
    for key in FREE_AM_KEYS:
        am.pop(key, None)
    return {"am": am, "corpus_key": corpus_key, "n_mels": n_mels}


def bind_folder(folder: Path, facts: dict[str, Any], what: str) -> None:
    """Write folder/settings.json on first use; refuse a folder made with other settings.

    Raises:
        PrunekitError: the folder holds a `what` made with other settings.
    """
    path = folder / "settings.json"
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")) != json.loads(json.dumps(facts)):
            raise PrunekitError(
                f"{folder} holds {what} made with other settings (recipe or corpus): pass "
                "another --out, or --no-resume to start over"
            )
        return
    write_json(path, facts)


def acoustic_stage(
    cfg: AcousticSection,
    feats: dict[str, FeatureSet],
    out_dir: Path,
    corpus_key: str,
    *,
    progress: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train (resume, or reuse when finished) the acoustic model; (best model, metrics)."""
    n_mels = feats["train"].feats.shape[1]
    bind_folder(out_dir, am_settings(cfg, corpus_key, n_mels), "an acoustic model")
    done = out_dir / "metrics.json"
    if done.is_file():
        metrics = json.loads(done.read_text(encoding="utf-8"))
    else:
        metrics = train_acoustic_model(cfg, feats, out_dir, progress=progress)
    model = build_acoustic_model(cfg, n_mels)
    load_checkpoint(out_dir / "checkpoints" / "best", model)
    return model.eval(), metrics
