"""`prunekit bench asr`: seed 004's Tables 4-6 (WER of pruned NNLMs in shallow fusion), resumable.

It takes a finished `prunekit asr` run (`--asr DIR`: the acoustic model's CTC log-probs of dev
and test, the density-ratio source LM, the decoding settings) and the LMs of a paper grid trained
on the spoken form of the same text (`data.text=spoken`, forced): the cells the tables need run
through `prunekit bench paper`'s machinery in `OUT/grid` (or an existing grid, `--grid DIR`), with
one-shot pruning fine-tuned as long as incremental pruning (`paper.oneshot_steps` =
`paper.prune.steps` unless set), so Table 4 compares two trained models. Then every LM decodes the
test set (`prunekit.bench.asr_decode`), `--jobs` cells at a time, one thread each.

    OUT/grid/            the paper grid of the LMs (cells/, runs/, grid.json)
    OUT/lms/<cell>/      each LM's compact export + tokenizer (what decodes)
    OUT/cells/decode-<cell>.json   one finished decode cell (atomic; a rerun skips it)
    OUT/bench.json       settings and one entry per invocation (command, commit, machine)
    OUT/tables.md, results.json, *.png   `prunekit report OUT` (also after every run)
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from prunekit.atomic import write_json
from prunekit.audio.featureset import FeatureSet
from prunekit.bench import paper as paper_bench
from prunekit.bench.asr_cells import NO_LM, T5_SIZES, DecodeCell, decode_cells, grid_glob, lm_cells
from prunekit.bench.asr_decode import DecodeContext, run_decode_cell
from prunekit.bench.paper_cells import plan_cells, select
from prunekit.bench.paper_run import Grid
from prunekit.bench.paper_spec import load_paper_recipe
from prunekit.config.asr import AsrRecipe, parse_asr_recipe, text_corpus
from prunekit.errors import PrunekitError
from prunekit.eval.wer import FrequencyBins
from prunekit.pipelines.asr_decode import voice_groups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchArgs:
    """Everything that opens a bench (picklable: decode workers open it again)."""

    asr: str
    out: str
    recipe: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    grid: str | None = None
    t5_sizes: tuple[float, ...] = T5_SIZES
    tune_utterances: int | None = 100
    jobs: int = 2
    command: str = ""


@dataclass
class Bench:
    """An opened bench: its arguments, the asr run's recipe, the grid of LMs."""

    args: BenchArgs
    asr_recipe: AsrRecipe
    asr_metrics: dict[str, Any]
    grid: Grid

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    @property
    def decode(self) -> Any:
        d = self.asr_recipe.decode
        if self.args.tune_utterances is not None:
            d = d.model_copy(update={"tune_utterances": self.args.tune_utterances})
        return d.model_copy(update={"threads": 1})


def read_asr_run(asr: Path) -> tuple[AsrRecipe, dict[str, Any]]:
    """The recipe and metrics of a finished `prunekit asr` run.

    Raises:
        PrunekitError: the run has not finished.
    """
    path = asr / "metrics.json"
    if not path.is_file() or not (asr / "logprobs" / "test.safetensors").is_file():
        raise PrunekitError(
            f"{asr} is not a finished `prunekit asr` run (no metrics.json): run `prunekit asr "
            f"--out {asr}` first (or pass --asr with its folder)"
        )
    metrics = json.loads(path.read_text(encoding="utf-8"))
    return parse_asr_recipe(metrics["recipe"]), metrics


def _grid_overrides(args: BenchArgs, corpus: str) -> dict[str, Any]:
    """The user's overrides plus what the bench needs: spoken text of the asr run's corpus,
    fine-tuned one-shot cells, no per-cell latency (decoding measures speed)."""
    over = dict(args.overrides)
    if "data.corpus" in over and str(over["data.corpus"]) != corpus:
        raise PrunekitError(
            f"data.corpus={over['data.corpus']} but the acoustic model's corpus reads {corpus}: "
            "the LMs must learn the text the speech was made from; drop the override"
        )
    over.update({"data.corpus": corpus, "data.text": "spoken", "paper.latency.each_cell": False})
    return over


def open_bench(args: BenchArgs) -> Bench:
    """Read the asr run and the paper recipe; open the grid of LMs.

    Raises:
        PrunekitError: an unfinished asr run, a bad recipe or override, a Table-5 size the grid
            does not have.
    """
    asr_recipe, metrics = read_asr_run(Path(args.asr))
    over = _grid_overrides(args, text_corpus(asr_recipe))
    cfg, paper = load_paper_recipe(args.recipe, over)
    if "paper.oneshot_steps" not in over:
        over["paper.oneshot_steps"] = paper.prune.steps
        cfg, paper = load_paper_recipe(args.recipe, over)
    missing = [s for s in args.t5_sizes if not any(abs(s - t) < 1e-9 for t in paper.sizes)]
    if missing:
        raise PrunekitError(
            f"Table-5 sizes {missing} are not among paper.sizes {paper.sizes}: add them to "
            "paper.sizes or choose others with --t5-sizes"
        )
    grid_dir = Path(args.grid) if args.grid else Path(args.out) / "grid"
    grid = paper_bench.open_grid(cfg, paper, grid_dir, args.command)
    return Bench(args, asr_recipe, metrics, grid)


def decode_context(bench: Bench) -> DecodeContext:
    """Load what decode cells share (acoustic scores, source LM, voice groups, frequency bins)."""
    from prunekit.asr.load_lm import load_lm
    from prunekit.data.corpus import load_corpus

    asr = Path(bench.args.asr)
    dev = FeatureSet.load(asr / "logprobs" / "dev.safetensors")
    test = FeatureSet.load(asr / "logprobs" / "test.safetensors")
    given = (bench.asr_metrics.get("source_lm") or {}).get("given")
    trained = asr / "source_lm" / "checkpoints" / "best"
    ilm = load_lm(given) if given else (load_lm(trained) if trained.is_dir() else None)
    unseen = set(bench.asr_metrics["corpus"]["unseen_test_voices"])
    text = load_corpus(bench.grid.cfg.data.corpus, text="spoken").train
    return DecodeContext(
        bench.out, bench.grid, dev, test, ilm, bench.decode, voice_groups(test, unseen),
        FrequencyBins.from_text(text), paper_bench.invocation(bench.args.command),
    )  # fmt: skip


def check_oneshot_trained(bench: Bench) -> None:
    """Refuse Table 4 one-shot cells that were not fine-tuned (a grid run with oneshot_steps=0).

    Raises:
        PrunekitError: naming the cell and the fix.
    """
    for cid in lm_cells(bench.grid.paper, bench.args.t5_sizes)["table4"]:
        done = cid.startswith("oneshot-") and bench.grid.cell_json(cid).is_file()
        if done and int(bench.grid.result(cid).get("step") or 0) == 0:
            raise PrunekitError(
                f"grid cell {cid} is training-free one-shot pruning (paper.oneshot_steps=0): "
                "Table 4 compares fine-tuned models; use a grid run with "
                "--set paper.oneshot_steps=N, or another --grid"
            )


def check_same_decoding(bench: Bench) -> None:
    """Finished decode cells must come from this acoustic run and these decoding settings.

    Raises:
        PrunekitError: bench.json names another `--asr` run or other decode settings while
            finished cells exist (they would be mixed into one table).
    """
    path = bench.out / "bench.json"
    if not path.is_file() or not any((bench.out / "cells").glob("decode-*.json")):
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    asr = str(Path(bench.args.asr).resolve())
    if old.get("asr") not in (None, asr):
        raise PrunekitError(
            f"{bench.out} holds cells decoded from {old['asr']}, not {asr}: use another --out, "
            f"or delete {bench.out / 'cells'} to decode again"
        )
    new = bench.decode.model_dump(mode="json")
    changed = sorted(k for k in new if k in old.get("decode", {}) and old["decode"][k] != new[k])
    if changed:
        k = changed[0]
        raise PrunekitError(
            f"{bench.out} holds cells decoded with decode.{k}={old['decode'][k]!r}, the --asr "
            f"run now says {new[k]!r}: use another --out, or delete {bench.out / 'cells'} to "
            "decode again"
        )


def decode_status(bench: Bench, cell: DecodeCell) -> str:
    return "done" if (bench.out / "cells" / f"{cell.id}.json").is_file() else "todo"


# ------------------------------------------------------------------ cost


def _utterance_seconds(lm_params: int | None, beam_width: int = 16) -> float:
    """Modelled decode seconds per test utterance at 1 thread (~5.5 s of speech): 0.02 without
    an LM, else 0.1 + 0.1 per million LM parameters at beam 16, times (beam / 16) ** 1.2 (LM
    calls per step follow the hypotheses kept; measured on the dev box: 4.2M-parameter LM,
    tuning + test 7.6 min at beam 16, 40.9 min at beam 64)."""
    if lm_params is None:
        return 0.02
    return (0.1 + 0.1 * lm_params / 1e6) * max(1.0, beam_width / 16) ** 1.2


def estimate_decode(bench: Bench, cell: DecodeCell, base_params: int) -> float:
    """Modelled seconds of one decode cell: tuning (about 8 dev decodes sharing LM work) + test."""
    n_test = bench.asr_metrics["corpus"]["utterances"]["test"]
    if cell.lm is None:
        return n_test * _utterance_seconds(None)
    n_dev = bench.decode.tune_utterances or bench.asr_metrics["corpus"]["utterances"]["dev"]
    size = 1.0 if not cell.lm.startswith(("scratch", "oneshot", "incremental")) else _size(cell)
    per = _utterance_seconds(int(base_params * size), bench.decode.beam_width)
    return per * (n_test + n_dev * (1 + 0.25 * 7)) + 15.0  # + export and loading


def _size(cell: DecodeCell) -> float:
    tag = next(p for p in (cell.lm or "").split("-") if p.startswith("s") and p[1:2].isdigit())
    return float(tag[1:]) / 100


def dry_run(bench: Bench) -> str:
    """The LM cells' plan (as `bench paper --dry-run`) and the decode cells with estimates."""
    cells = select(plan_cells(bench.grid.paper), grid_glob(bench.grid.paper, bench.args.t5_sizes))
    rows = paper_bench.describe(bench.grid, cells)
    text = ["LM cells (paper grid in " + str(bench.grid.out) + "):",
            paper_bench.format_plan(rows, bench.grid.cfg.train.threads), "",
            "decode cells (1 thread each, --jobs " + str(bench.args.jobs) + " at a time):"]  # fmt: skip
    total = left = 0.0
    for cell in decode_cells(bench.grid.paper, bench.args.t5_sizes):
        est = estimate_decode(bench, cell, bench.grid.base_params)
        status = decode_status(bench, cell)
        total += est
        left += 0.0 if status == "done" else est
        text.append(f"  {cell.id:<48} {status:<5} {est / 60:6.1f} m  {','.join(cell.tables)}")
    lm_left = sum(r["seconds_left"] for r in rows)
    text.append(
        f"decoding: {total / 3600:.2f} h of cell time, {left / 3600:.2f} h left, "
        f"{left / bench.args.jobs / 3600:.2f} h wall with {bench.args.jobs} job(s); whole bench "
        f"left: {(lm_left + left / bench.args.jobs) / 3600:.2f} h (cost model: "
        "_utterance_seconds)"
    )
    return "\n".join(text)


# ------------------------------------------------------------------ running

_WORKER: dict[str, Any] = {}


def _init_worker(args: BenchArgs) -> None:
    bench = open_bench(args)
    _WORKER["ctx"] = decode_context(bench)


def _work(cell: DecodeCell) -> str:
    run_decode_cell(_WORKER["ctx"], cell)
    return cell.id


def write_manifest(bench: Bench, cells: list[DecodeCell]) -> None:
    """bench.json: the bench's settings, plan, and this invocation appended."""
    path = bench.out / "bench.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    a = bench.args
    inv = {**paper_bench.invocation(a.command), "cells": [c.id for c in cells]}
    write_json(path, {
        "asr": str(Path(a.asr).resolve()), "grid": str(bench.grid.out),
        "t5_sizes": list(a.t5_sizes), "table4_sizes": list(bench.grid.paper.sizes),
        "decode": bench.decode.model_dump(mode="json"),
        "grid_cells": lm_cells(bench.grid.paper, a.t5_sizes),
        "decode_cells": [{"id": c.id, "lm": c.lm, "tables": list(c.tables)}
                         for c in decode_cells(bench.grid.paper, a.t5_sizes)],
        "invocations": [*old.get("invocations", []), inv],
    })  # fmt: skip


def write_refs(bench: Bench) -> None:
    """refs.json: the test references (the report's MAPSSWE tests need them)."""
    path = bench.out / "refs.json"
    if not path.is_file():
        test = FeatureSet.load(Path(bench.args.asr) / "logprobs" / "test.safetensors")
        write_json(path, list(test.texts))


def select_decode(bench: Bench, pattern: str | None) -> list[DecodeCell]:
    """Decode cells matching comma-separated globs (with the cells they start from)."""
    import fnmatch

    cells = decode_cells(bench.grid.paper, bench.args.t5_sizes)
    if not pattern:
        return cells
    globs = [p.strip() for p in pattern.split(",") if p.strip()]
    wanted = {c.id for c in cells if any(fnmatch.fnmatchcase(c.id, g) for g in globs)}
    wanted |= {d for c in cells if c.id in wanted for d in c.depends}
    if not wanted:
        raise PrunekitError(f"--cells {pattern!r} matches no decode cell: see --dry-run")
    return [c for c in cells if c.id in wanted]


def run_bench(
    bench: Bench, cells_glob: str | None = None, on_cell: Callable[[str, str], Any] | None = None
) -> dict[str, list[str]]:
    """Train the LM cells still missing, then decode every selected cell not finished yet.

    Returns:
        {"ran": decode cells run, "skipped": decode cells already finished}.
    """
    cells = select_decode(bench, cells_glob)
    lms = sorted({c.lm for c in cells if c.lm})
    if lms:
        paper_bench.run_grid(bench.grid, ",".join(lms),
                             on_cell=lambda c, s: on_cell and on_cell(c.id, s))  # fmt: skip
    check_oneshot_trained(bench)
    check_same_decoding(bench)
    summary: dict[str, list[str]] = {"ran": [], "skipped": []}
    todo = []
    for cell in cells:
        if decode_status(bench, cell) == "done":
            summary["skipped"].append(cell.id)
        else:
            todo.append(cell)
    with paper_bench.grid_lock(bench.out):
        write_manifest(bench, cells)
        write_refs(bench)
        first = [c for c in todo if not c.depends]
        rest = [c for c in todo if c.depends]
        for batch in (first, rest):
            summary["ran"] += _decode_batch(bench, batch, on_cell)
    return summary


def _decode_batch(
    bench: Bench, cells: list[DecodeCell], on_cell: Callable[[str, str], Any] | None
) -> list[str]:
    """Decode `cells` in this process (one job) or in `jobs` spawned processes."""
    if not cells:
        return []
    jobs = min(bench.args.jobs, len(cells))
    if jobs <= 1:
        ctx = decode_context(bench)
        for cell in cells:
            if on_cell:
                on_cell(cell.id, "decode")
            with tqdm(desc=cell.id, unit="utt", leave=False, disable=on_cell is None) as bar:
                run_decode_cell(ctx, cell, bar)
        return [c.id for c in cells]
    done = []
    mp = multiprocessing.get_context("spawn")
    args = replace(bench.args, jobs=1)
    with ProcessPoolExecutor(jobs, mp_context=mp, initializer=_init_worker,
                             initargs=(args,)) as pool:  # fmt: skip
        futures = {pool.submit(_work, c): c for c in cells}
        for fut in as_completed(futures):
            done.append(fut.result())
            if on_cell:
                on_cell(futures[fut].id, "decoded")
    return done


__all__ = ["NO_LM", "BenchArgs", "dry_run", "open_bench", "run_bench"]
