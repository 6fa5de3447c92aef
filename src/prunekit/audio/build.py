"""Render a planned corpus to 16 kHz 16-bit wav files: in parallel, resumable, with a progress bar.

Every utterance is written atomically to `ROOT/wav/SPLIT/ID.wav` (or where `path_fn` says), so a
killed build leaves only whole files, and building again renders only the missing ones. Other
corpora (keyword clips, `audio.kws_synth`) pass their own `render_fn` and `path_fn`. The wall-clock time spent is
accumulated across sessions in `ROOT/progress.json`.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from prunekit.atomic import write_json
from prunekit.audio.augment import apply_augmentation
from prunekit.audio.plan import PlannedUtterance
from prunekit.audio.synth import Voice, synthesize
from prunekit.audio.wav import load_audio, write_wav
from prunekit.export.timing import num_threads

PEAK = 0.9
"""Synthesized speech is scaled to this peak before augmentation."""

_BABBLE: list[torch.Tensor] = []  # per process: the babble clips, loaded once


def wav_path(root: Path, utt: PlannedUtterance) -> Path:
    """Where an utterance's wav lives in the corpus folder."""
    return root / "wav" / utt.split / f"{utt.id}.wav"


def render(utt: PlannedUtterance, babble_pool: list[torch.Tensor]) -> torch.Tensor:
    """Synthesize one planned utterance and apply its augmentation: (T,) at 16 kHz."""
    wave = synthesize(utt.synth_text, Voice.from_id(utt.voice))
    peak = wave.abs().max()
    if peak > 0:
        wave = wave * (PEAK / peak)
    return apply_augmentation(wave, utt.augment, babble_pool=babble_pool)


RenderFn = Callable[[PlannedUtterance, list[torch.Tensor]], torch.Tensor]
"""(utterance, babble clips) -> its (T,) waveform at 16 kHz; a module-level function (pickled)."""
PathFn = Callable[[Path, PlannedUtterance], Path]
"""(corpus root, utterance) -> where its wav goes."""


def _render_to(utt: PlannedUtterance, root: Path, render_fn: RenderFn, path_fn: PathFn) -> None:
    write_wav(path_fn(root, utt), render_fn(utt, _BABBLE))


def _load_babble(babble_paths: list[Path]) -> None:
    _BABBLE[:] = [load_audio(p) for p in babble_paths]


def _init_worker(babble_paths: list[Path], parent: int) -> None:
    torch.set_num_threads(1)
    _load_babble(babble_paths)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker once the building process is gone (killed builds leave no orphans)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class _Clock:
    """Wall-clock seconds spent building, kept in ROOT/progress.json across killed sessions."""

    def __init__(self, root: Path) -> None:
        self.path = root / "progress.json"
        prior = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.prior, self.sessions = prior.get("seconds", 0.0), prior.get("sessions", 0) + 1
        self.start = self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.prior + time.perf_counter() - self.start

    def tick(self, force: bool = False) -> None:
        if force or time.perf_counter() - self.last > 10:
            write_json(self.path, {"seconds": self.seconds, "sessions": self.sessions})
            self.last = time.perf_counter()


def _run_pool(
    pending: list[PlannedUtterance],
    root: Path,
    babble: list[Path],
    workers: int,
    done: Callable[[], None],
    fns: tuple[RenderFn, PathFn],
) -> None:
    if workers == 1:
        _load_babble(babble)
        with num_threads(1):
            for utt in pending:
                _render_to(utt, root, *fns)
                done()
        return
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, ctx, _init_worker, (babble, os.getpid())) as pool:
        futures = [pool.submit(_render_to, utt, root, *fns) for utt in pending]
        try:
            for future in cf.as_completed(futures):
                future.result()
                done()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def build(
    plan: list[PlannedUtterance],
    root: Path,
    *,
    workers: int = 2,
    progress: bool = True,
    render_fn: RenderFn = render,
    path_fn: PathFn = wav_path,
    desc: str = "speech corpus",
) -> dict[str, float]:
    """Render every planned utterance that has no wav yet under `root`.

    Babble clips are rendered first (the training utterances mix them in as noise).
    `render_fn` / `path_fn` (module-level functions, as workers are spawned) replace `render`
    and `wav_path`.

    Returns:
        {"rendered": utterances rendered now, "seconds": build wall-clock seconds over all
        sessions, "sessions": how many sessions the build took}.
    """
    clock = _Clock(root)
    babble = [u for u in plan if u.split == "babble"]
    rest = [u for u in plan if u.split != "babble"]
    pending_babble = [u for u in babble if not path_fn(root, u).is_file()]
    pending = [u for u in rest if not path_fn(root, u).is_file()]
    bar = tqdm(
        total=len(plan),
        initial=len(plan) - len(pending) - len(pending_babble),
        unit="utt",
        desc=desc,
        disable=not progress,
        dynamic_ncols=True,
    )

    def done() -> None:
        bar.update()
        clock.tick()

    try:
        fns = (render_fn, path_fn)
        _run_pool(pending_babble, root, [], 1, done, fns)
        _run_pool(pending, root, [path_fn(root, u) for u in babble], workers, done, fns)
    finally:
        bar.close()
        clock.tick(force=True)
    return {
        "rendered": len(pending) + len(pending_babble),
        "seconds": clock.seconds,
        "sessions": clock.sessions,
    }
