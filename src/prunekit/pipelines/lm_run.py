"""The main job (`prunekit run`): corpus -> baseline -> every prune section -> measured speed ->
metrics.json, report.md and plots in the run folder.

The corpus is prepared (and its tokenizer built) once; the baseline and every section are bound
to it and to the recipe (`run_binding`), so a rerun into the same folder continues the same run
or says why it cannot.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json, write_text
from prunekit.config import RunConfig
from prunekit.lowrank.report import lowrank_markdown, plot_pareto
from prunekit.machine import machine_info
from prunekit.pipelines.lm_baseline import build_lm, prepare_data, train_baseline
from prunekit.pipelines.lm_compress import check_sections, compress, load_trained
from prunekit.pipelines.lm_lowrank import check_lowrank, lowrank_lm
from prunekit.pipelines.lm_narang import check_narang
from prunekit.pipelines.lm_speed import measure_speed
from prunekit.report.baseline import baseline_markdown
from prunekit.report.compression import compression_table, export_table
from prunekit.report.plots import plot_curves, plot_ppl_vs_size

log = logging.getLogger(__name__)


def run_main(
    cfg: RunConfig, out: Path, *, resume: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Baseline, every prune and low-rank section, then the decode speed of every compressed
    model that has a checkpoint of its own (the prune sections' rows).

    Returns:
        {"baseline": metrics (with "speed" when measured), "compressed": rows, "speed":
        settings or None, "out": the run folder}.
    """
    data = prepare_data(cfg)
    model = build_lm(cfg, data.tokenizer.vocab_size)
    check_sections(cfg, model)  # bad sections fail first
    check_lowrank(cfg, model)
    check_narang(cfg, model)
    baseline = train_baseline(cfg, out / "baseline", data=data, resume=resume, progress=progress)
    best = out / "baseline" / "checkpoints" / "best"
    rows: list[dict[str, Any]] = []
    for section in cfg.prune:
        rows += compress(
            cfg, section, best, data, out / "prune" / section.name, resume=resume,
            progress=progress,
        )  # fmt: skip
    for lowrank in cfg.lowrank:  # seed 000: trains from scratch, no baseline needed
        folder = out / "lowrank" / lowrank.name
        rows += lowrank_lm(cfg, lowrank, data, folder, resume=resume, progress=progress)
    speed = None
    timed = [r for r in rows if "checkpoint" in r]
    if timed and cfg.speed.enabled:
        log.info("measuring decode speed of %d compressed models", len(timed))
        measured = measure_speed(load_trained(best), [r["checkpoint"] for r in timed], cfg.speed)
        for row, entry in zip(timed, measured["models"], strict=True):
            row.update(entry)
        baseline["speed"], speed = measured["dense"], measured["settings"]
    return {"baseline": baseline, "compressed": rows, "speed": speed, "out": str(out)}


def _speed_note(result: dict[str, Any]) -> str:
    s, dense = result["speed"], result["baseline"]["speed"]
    return (
        f"\nMeasured speed-up: batch-1 incremental decoding of each model as `prunekit export` "
        f"deploys it (`{result['compressed'][0]['backend']}`) over the fastest dense path "
        f"(`{dense['backend']}`, {dense['decode_ms_per_token']:.3f} ms/token), {s['threads']} "
        f"thread(s), {s['context']} context tokens then {s['steps']} timed steps, "
        f"{s['repeats']} repetitions with the models interleaved; medians. Compact bytes: the "
        "tensors of the compact export. Timings on a busy machine are noise: rerun on an idle "
        "one before quoting them.\n"
    )


def run_markdown(result: dict[str, Any], command: str | None = None) -> str:
    """report.md of a `run_main` result, from the result alone."""
    base, rows = result["baseline"], result["compressed"]
    text = baseline_markdown(base, machine_info(), command)
    if not rows:
        return text
    text += "\n## Compressed models\n\n" + compression_table(base, rows)
    text += (
        "\nparams: effective parameters (masked entries excluded, factorized layers counted at "
        "their kept rank). Each size is reached when the pruning schedule lands on it (at the "
        "step shown), then fine-tuned with its masks fixed for the steps shown; rows marked "
        "'off target' are more than 1 % below their target (the method's granularity).\n"
    )
    if result.get("speed"):
        text += _speed_note(result)
    text += "\n![perplexity vs size](ppl_vs_size.png)\n"
    timed = [r for r in rows if "checkpoint" in r]
    if timed:
        text += "\n## Checkpoints and compact export\n\n" + export_table(timed, result["out"])
    low = [r for r in rows if "regularizer" in r]  # seed 000 stage-2 rows
    if low:
        text += "\n## Low rank (seed 000)\n\n" + lowrank_markdown(low, "valid_ppl")
        text += "\n![low rank Pareto front](lowrank_pareto.png)\n"
    return text


def write_report(result: dict[str, Any], out: Path, command: str | None = None) -> None:
    """metrics.json, report.md, curves.png and ppl_vs_size.png from the results alone."""
    base, rows = result["baseline"], result["compressed"]
    write_json(out / "metrics.json", {**result, "command": command})
    plot_curves(base["history"]["train"], base["history"]["valid"], out / "curves.png")
    if rows:
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            series.setdefault(r["variant"], []).append((r["effective_params"], r["valid_ppl"]))
        baseline = (base["params"], base["valid_ppl"])
        plot_ppl_vs_size(series, out / "ppl_vs_size.png", baseline=baseline)
        low = [r for r in rows if "regularizer" in r]
        if low:
            plot_pareto(low, out / "lowrank_pareto.png", metric="valid_ppl", dense=baseline)
    write_text(out / "report.md", run_markdown(result, command))
