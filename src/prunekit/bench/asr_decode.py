"""One decode cell of `prunekit bench asr`: export the cell's LM, tune fusion on dev, decode test.

Every LM decodes as it would be deployed: exported by `export.compact` (smaller / low-rank / CSR
layers; a dense model through the fastest dense path) and run through `runtime.fast_decoder`, so
its real-time factor is the compact model's. The fused scores are those of the pruned model (the
compact export is exact in fp32). The fusion weights are tuned on dev for each LM ("optimized for
each decoding experiment", seed 004 §4.1.2) by coordinate search from the baseline's weights.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.asr.beam_search import FusionParams
from prunekit.asr.lm_scorer import WordLM
from prunekit.asr.load_lm import LoadedLM, load_checkpoint_lm, load_lm
from prunekit.atomic import write_json
from prunekit.audio.featureset import FeatureSet
from prunekit.bench.asr_cells import DecodeCell
from prunekit.bench.paper_run import Grid, final_checkpoint
from prunekit.config.asr import DecodeSection
from prunekit.errors import PrunekitError
from prunekit.eval.wer import FrequencyBins, wer_by_frequency
from prunekit.pipelines.asr_decode import decode_system, tune

GRID_KEYS = ("kind", "size", "schedule", "criterion", "method", "valid_ppl", "test_ppl",
             "valid_word_ppl", "test_word_ppl", "params", "effective_params", "size_fraction",
             "flops_per_token", "sparse_flops_per_token", "step", "steps")  # fmt: skip


@dataclass
class DecodeContext:
    """What every decode cell shares: the grid, the acoustic scores, the source LM, settings."""

    out: Path
    grid: Grid
    dev: FeatureSet  # CTC log-probs of dev (from the `prunekit asr` run)
    test: FeatureSet
    ilm: LoadedLM | None
    decode: DecodeSection
    groups: dict[str, list[int]]
    bins: FrequencyBins
    invocation: dict[str, Any]

    def cell_json(self, cell_id: str) -> Path:
        return self.out / "cells" / f"{cell_id}.json"


def grid_checkpoint(grid: Grid, cell_id: str) -> Path:
    """The checkpoint of a finished grid cell: the baseline's best, a from-scratch model's best,
    a pruning run's last.

    Raises:
        PrunekitError: the cell has not finished.
    """
    grid.result(cell_id)  # raises when not finished
    if cell_id == "baseline":
        return grid.baseline_ckpt
    if cell_id.startswith("scratch-"):
        best = grid.run_dir(cell_id) / "checkpoints" / "best"
        if not best.is_dir():
            raise PrunekitError(f"cell {cell_id} has no checkpoint at {best}: run it again")
        return best
    return final_checkpoint(grid, cell_id)


def export_lm(ctx: DecodeContext, cell_id: str) -> Path:
    """out/lms/<cell>/: the cell's LM as a compact export + its tokenizer (reused when there)."""
    from prunekit.export.compact import compact
    from prunekit.export.io import save_compact

    folder = ctx.out / "lms" / cell_id
    ckpt = grid_checkpoint(ctx.grid, cell_id)
    if (folder / "manifest.json").is_file() and (folder / "tokenizer.model").is_file():
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("source", {}).get("cell") == cell_id:
            return folder
    model, pruned = load_checkpoint_lm(ckpt)
    small, manifest = compact(model, dense=not pruned, threads=1, batch_size=4, repeats=5)
    manifest["source"] = {"cell": cell_id, "checkpoint": str(ckpt)}
    tokenizer = {"tokenizer.model": ctx.grid.data.tokenizer.to_bytes()}  # sha256 in the manifest
    save_compact(small, manifest, folder, files=tokenizer)
    return folder


def _count(model: nn.Module) -> int:
    return sum(int(p.count_nonzero()) for p in model.parameters())


def baseline_start(ctx: DecodeContext, cell: DecodeCell) -> FusionParams | None:
    """The baseline's tuned weights (the start of every other LM's search)."""
    if not cell.depends:
        return None
    path = ctx.cell_json(cell.depends[0])
    if not path.is_file():
        raise PrunekitError(f"{cell.id} starts from {cell.depends[0]}: decode that cell first")
    return FusionParams.from_dict(json.loads(path.read_text(encoding="utf-8"))["tuning"]["best"])


def _fused_lm(ctx: DecodeContext, cell_id: str) -> tuple[WordLM, dict[str, Any]]:
    from prunekit.export.io import read_manifest
    from prunekit.runtime import fast_decoder

    folder = export_lm(ctx, cell_id)
    loaded = load_lm(folder)
    word = WordLM(fast_decoder(loaded.model), loaded.tokenizer)
    manifest = read_manifest(folder)
    facts = {
        "export": str(folder),
        "compact_bytes": int(manifest["weights"]["bytes"]),
        "compact_params": sum(p.numel() for p in loaded.model.parameters()),
        "compact_nonzero": _count(loaded.model),
        **{k: v for k, v in ctx.grid.result(cell_id).items() if k in GRID_KEYS},
    }
    return word, facts


def run_decode_cell(ctx: DecodeContext, cell: DecodeCell, bar: Any = None) -> dict[str, Any]:
    """Tune (LM cells), decode test at 1 thread, write cells/<id>.json; return the record."""
    torch.set_num_threads(ctx.decode.threads)
    started = time.perf_counter()
    record: dict[str, Any] = {"id": cell.id, "lm": cell.lm, "tables": list(cell.tables)}
    lm = ilm = None
    params = None
    tick = bar.update if bar is not None else None
    if cell.lm is not None:
        lm, facts = _fused_lm(ctx, cell.lm)
        record["lm_facts"] = facts
        ilm = WordLM(ctx.ilm.model, ctx.ilm.tokenizer) if ctx.ilm is not None else None
        tuning, seconds = tune(ctx.dev, ctx.decode, lm=lm, ilm=ilm,
                               start=baseline_start(ctx, cell), on_utterance=tick)  # fmt: skip
        record["tuning"] = {**tuning.to_dict(), "seconds": seconds}
        params = tuning.best
    before = (lm.seconds, lm.tokens, lm.calls) if lm is not None else (0.0, 0, 0)
    result = decode_system(ctx.test, ctx.decode, ctx.groups, lm=lm, ilm=ilm, params=params,
                           on_utterance=tick)  # fmt: skip
    timing = result["timing"]
    after = (lm.seconds, lm.tokens, lm.calls) if lm is not None else (0.0, 0, 0)
    timing["fused_lm_seconds"], timing["fused_lm_tokens"], timing["fused_lm_calls"] = (
        a - b for a, b in zip(after, before, strict=True)
    )
    timing["fused_lm_share"] = timing["fused_lm_seconds"] / max(1e-9, timing["decode_seconds"])
    freq = wer_by_frequency(ctx.test.texts, result["texts"], ctx.bins)
    record.update(result, wer_by_frequency=[c.to_dict() for c in freq])
    record.update(
        wall_seconds_last_call=time.perf_counter() - started,
        finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **ctx.invocation,
    )
    write_json(ctx.cell_json(cell.id), record)
    return record
