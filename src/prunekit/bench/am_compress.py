"""`prunekit bench am-compress`: seeds 000 and 001 on the CTC acoustic model, cell by cell.

The work folder holds:

    settings.json          what every cell depends on (corpus, model, training, eval splits)
    invocations/*.json     one per invocation (command, git commit, machine, start time)
    cells/<id>.json        one finished cell: its rows (written atomically; a rerun skips it)
    runs/<id>/             the cell's run folder; a killed cell resumes from its checkpoints
    locks/<id>.lock        the process running a cell, so that several invocations on the same
                           folder (one per core) share the work without running a cell twice

Cells are listed in `prunekit.bench.am_cells`; each one runs through the speech pipelines
(`prunekit.pipelines.asr.train_acoustic_model`, `prunekit.pipelines.am_compress`). The report
(`prunekit.bench.am_report`) is rebuilt from the cell files.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunekit.atomic import pid_alive, write_json
from prunekit.audio.featureset import FeatureSet
from prunekit.bench.am_cells import (
    AmCell,
    cell_json,
    cell_status,
    lowrank_points,
    plan_am_cells,
    run_dir,
    select,
)
from prunekit.bench.am_spec import AmCompressSpec
from prunekit.bench.paper import invocation
from prunekit.bench.stream_latency import rnn_consumers
from prunekit.errors import PrunekitError
from prunekit.pipelines.am_compress import (
    am_metrics,
    am_model,
    greedy_rates,
    lowrank_am,
    narang_am,
)
from prunekit.pipelines.asr import build_acoustic_model, ctc_task, train_acoustic_model
from prunekit.pipelines.lm_narang import narang_config
from prunekit.pipelines.prune_train import cubic_like, train_pruned
from prunekit.prune import PruneConfig, ScopeConfig
from prunekit.prune.size import count_params

log = logging.getLogger(__name__)
Feats = dict[str, FeatureSet]
FREE_TRAIN_KEYS = ("threads", "log_every", "checkpoint_every")
POLL_SECONDS = 30.0


def bench_features(spec: AmCompressSpec, feats: Feats) -> Feats:
    """train (a seeded subset of `train_utterances` when set), dev and the eval splits."""
    missing = sorted({"train", "dev", *spec.bench.eval_splits} - set(feats))
    if missing:
        raise PrunekitError(f"the speech features lack {missing}: build the corpus with them")
    train = feats["train"]
    n = spec.bench.train_utterances
    if n is not None and n < len(train):
        g = torch.Generator().manual_seed(spec.am.train.seed)
        train = train.subset(sorted(torch.randperm(len(train), generator=g)[:n].tolist()))
    return {"train": train, "dev": feats["dev"], **{s: feats[s] for s in spec.bench.eval_splits}}


def settings(spec: AmCompressSpec, feats: Feats) -> dict[str, Any]:
    """What every finished cell depends on (a folder refuses cells made under other settings)."""
    am = spec.am.model_dump(mode="json")
    am["train"] = {k: v for k, v in am["train"].items() if k not in FREE_TRAIN_KEYS}
    return {
        "speech": spec.speech.model_dump(mode="json"), "am": am, "eval_splits": spec.bench.eval_splits,
        "train_utterances": len(feats["train"]), "train_frames": int(feats["train"].lengths.sum()),
    }  # fmt: skip


@dataclass
class AmGrid:
    """A work folder with its settings and features, and this invocation's facts."""

    work: Path
    spec: AmCompressSpec
    feats: Feats
    invocation: dict[str, Any]
    progress: bool = False

    def open(self) -> None:
        """Check the folder's settings (write them on first use); record this invocation.

        Raises:
            PrunekitError: the folder was run with other settings.
        """
        now = settings(self.spec, self.feats)
        path = self.work / "settings.json"
        if path.is_file():
            before = json.loads(path.read_text(encoding="utf-8"))
            for key in now:
                if before.get(key) != now[key]:
                    raise PrunekitError(
                        f"{self.work} was run with other `{key}` settings, so its finished cells "
                        "would not be comparable: pass another --work (or restore the settings)"
                    )
        else:
            write_json(path, now)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        write_json(self.work / "invocations" / f"{stamp}-{os.getpid()}.json", self.invocation)


@contextmanager
def claim(work: Path, cell: AmCell) -> Iterator[bool]:
    """Yield True while this process holds `cell`'s lock, False when a live process holds it."""
    lock = work / "locks" / f"{cell.id}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid_alive(pid):
                yield False
                return
            lock.unlink(missing_ok=True)  # a killed run's lock
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def _dense_row(grid: AmGrid, cell: AmCell) -> list[dict[str, Any]]:
    cfg = grid.spec.at_width(cell.width).am
    m = train_acoustic_model(cfg, grid.feats, run_dir(grid.work, cell), progress=grid.progress)
    keep = ("steps", "train_seconds", "train_frames_per_second", "frames_seen", "params",
            "nonzero_params", "size_bytes", "flops_per_output_frame")  # fmt: skip
    row = {k: m[k] for k in keep}
    row.update(greedy_rates(m["greedy"], grid.spec.bench.eval_splits))
    row.update(valid_loss=m["best_valid_loss_per_char"], dense_params=m["params"])
    return [row]


def _narang_section(spec: AmCompressSpec, compare: list[str]):
    section = next(s for s in spec.prune if s.schedule == "narang")
    return section.model_copy(update={"narang": section.narang.model_copy(update={"compare": compare})})  # fmt: skip


def _dense_checkpoint(grid: AmGrid, width: int) -> Path:
    return grid.work / "runs" / f"dense-h{width}" / "checkpoints" / "best"


def _narang_rows(grid: AmGrid, cell: AmCell) -> list[dict[str, Any]]:
    compare = [str(cell.point)] if cell.kind == "cubic" else []
    folder = grid.work / "runs" / f"narang-h{cell.width}"
    rows = narang_am(
        grid.spec.at_width(cell.width), _narang_section(grid.spec, compare), grid.feats, folder,
        dense=_dense_checkpoint(grid, cell.width), splits=grid.spec.bench.eval_splits,
        progress=grid.progress,
    )  # fmt: skip
    return rows[1:] if cell.kind == "cubic" else rows[:1]


def _structured_rows(grid: AmGrid, cell: AmCell) -> list[dict[str, Any]]:
    """Gate-aware removal of GRU units (the Linear after them shrinks too), the cubic schedule
    to `bench.structured` of the units over Narang's window, during the first training."""
    recipe = grid.spec.at_width(cell.width)
    cfg = recipe.am
    task = ctc_task(cfg, grid.feats)
    model = am_model(cfg, task)
    ramp = narang_config(cfg, _narang_section(grid.spec, []), len(task), None).schedule
    pcfg = PruneConfig(
        criterion="magnitude", method="structured", scope=ScopeConfig(module_types=("GRU", "LSTM")),
        method_args={"consumers": rnn_consumers(model)},
        schedule=cubic_like(ramp, float(grid.spec.bench.structured)),
    )  # fmt: skip
    result = train_pruned(
        model, task, cfg.train, pcfg, run_dir(grid.work, cell),
        evaluate=am_metrics(grid.feats, cfg, grid.spec.bench.eval_splits),
        run_state={"am": cfg.model_dump(mode="json")}, progress=grid.progress,
    )  # fmt: skip
    return [{k: v for k, v in result.items() if k not in ("history", "per_tensor")}]


def _lowrank_rows(grid: AmGrid, cell: AmCell) -> list[dict[str, Any]]:
    point = lowrank_points(grid.spec)[str(cell.point)]
    return lowrank_am(
        grid.spec.at_width(cell.width), point, grid.feats, run_dir(grid.work, cell),
        splits=grid.spec.bench.eval_splits, progress=grid.progress,
    )  # fmt: skip


RUNNERS: dict[str, Callable[[AmGrid, AmCell], list[dict[str, Any]]]] = {
    "dense": _dense_row,
    "narang": _narang_rows,
    "cubic": _narang_rows,
    "structured": _structured_rows,
    "lowrank": _lowrank_rows,
}


def _dense_params(grid: AmGrid, width: int) -> int:
    cfg = grid.spec.at_width(width).am
    return count_params(build_acoustic_model(cfg, int(grid.feats["train"].feats.shape[1])))


def run_cell(grid: AmGrid, cell: AmCell) -> dict[str, Any]:
    """Run (or resume) `cell` and write cells/<id>.json; returns what it wrote."""
    started = time.perf_counter()
    rows = RUNNERS[cell.kind](grid, cell)
    dense = _dense_params(grid, cell.width)
    for r in rows:
        if cell.kind != "lowrank":
            r["variant"] = cell.id
        r.setdefault("dense_params", dense)
        r.update(kind=cell.kind, width=cell.width)
        if "params" not in r:
            r["params"] = r["effective_params"]
    result = {
        "cell": cell.spec(), "rows": rows, "invocation": grid.invocation,
        "wall_seconds_this_call": time.perf_counter() - started,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    write_json(cell_json(grid.work, cell), result)
    return result


def open_grid(
    spec: AmCompressSpec, feats: Feats, work: str | Path, command: str = "", progress: bool = False
) -> AmGrid:
    """An AmGrid over `work` with the bench's features (see `bench_features`)."""
    return AmGrid(Path(work), spec, bench_features(spec, feats), invocation(command), progress)


def run_am_grid(
    grid: AmGrid, globs: str | None = None, on_cell: Callable[[AmCell, str], None] | None = None,
    poll: float = POLL_SECONDS,
) -> dict[str, list[str]]:  # fmt: skip
    """Run every selected unfinished cell whose dependencies are finished, claiming each one;
    cells that another live process holds (or waits on) are waited for, polling every `poll` s.

    Returns:
        {"ran": ids this process ran, "skipped": ids finished before, "others": ids that other
        processes ran meanwhile}.

    Raises:
        PrunekitError: no cell matches `globs`, or the folder has other settings.
    """
    cells = select(plan_am_cells(grid.spec), globs)
    if not cells:
        raise PrunekitError(f"--cells {globs!r} matches no cell: see the ids with --dry-run")
    grid.open()
    summary: dict[str, list[str]] = {"ran": [], "skipped": [], "others": []}
    summary["skipped"] = [c.id for c in cells if cell_status(grid.work, c)[0] == "done"]
    pending = [c for c in cells if c.id not in summary["skipped"]]
    while pending:
        done = {c.id for c in cells if cell_json(grid.work, c).is_file()}
        summary["others"] += [c.id for c in pending if c.id in done]
        pending = [c for c in pending if c.id not in done]
        ran = False
        for cell in (c for c in pending if set(c.depends) <= done):
            with claim(grid.work, cell) as mine:
                if not mine or cell_json(grid.work, cell).is_file():
                    continue
                if on_cell is not None:
                    on_cell(cell, cell_status(grid.work, cell)[0])
                run_cell(grid, cell)
            summary["ran"].append(cell.id)
            pending.remove(cell)
            ran = True
            break
        if pending and not ran:
            log.info("%d cell(s) wait for other processes; polling", len(pending))
            time.sleep(poll)
    return summary
