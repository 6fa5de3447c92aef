"""`prunekit run`: the main job. Trains the baseline Transformer NNLM on the default corpus, prunes it
incrementally (data-driven; unstructured and factorized) to 50 / 25 / 10 % of its size, evaluates
each model and writes a run folder with metrics, report.md and plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prunekit.atomic import write_json, write_text
from prunekit.cli.common import add_recipe_args, check_out_dir, recipe_from_args
from prunekit.config import RunConfig
from prunekit.lowrank.report import lowrank_markdown, plot_pareto
from prunekit.machine import machine_info
from prunekit.pipelines.lm_baseline import build_lm, prepare_data, train_baseline
from prunekit.pipelines.lm_compress import check_sections, compress
from prunekit.pipelines.lm_lowrank import check_lowrank, lowrank_lm
from prunekit.pipelines.lm_narang import check_narang
from prunekit.report.baseline import baseline_markdown
from prunekit.report.compression import compression_table
from prunekit.report.plots import plot_curves, plot_ppl_vs_size
from prunekit.seeding import seed_everything


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="the main job: train, prune, evaluate, report", description=__doc__
    )
    add_recipe_args(p)
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a run exists")
    p.set_defaults(func=run)


def run_all(cfg: RunConfig, out: Path, *, resume: bool = True) -> dict[str, Any]:
    """Baseline, then every prune section; returns {"baseline": metrics, "compressed": rows}."""
    data = prepare_data(cfg)
    model = build_lm(cfg, data.tokenizer.vocab_size)
    check_sections(cfg, model)  # bad sections fail first
    check_lowrank(cfg, model)
    check_narang(cfg, model)
    baseline = train_baseline(cfg, out / "baseline", resume=resume)
    rows: list[dict[str, Any]] = []
    if cfg.prune:
        best = out / "baseline" / "checkpoints" / "best"
        for section in cfg.prune:
            rows += compress(cfg, section, best, data, out / "prune" / section.name)
    for lowrank in cfg.lowrank:  # seed 000: trains from scratch, no baseline needed
        rows += lowrank_lm(cfg, lowrank, data, out / "lowrank" / lowrank.name)
    return {"baseline": baseline, "compressed": rows}


def write_report(result: dict[str, Any], out: Path) -> None:
    """metrics.json, report.md, curves.png and ppl_vs_size.png from the results alone."""
    base, rows = result["baseline"], result["compressed"]
    write_json(out / "metrics.json", result)
    plot_curves(base["history"]["train"], base["history"]["valid"], out / "curves.png")
    text = baseline_markdown(base, machine_info())
    if rows:
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            series.setdefault(r["variant"], []).append((r["effective_params"], r["valid_ppl"]))
        plot_ppl_vs_size(
            series, out / "ppl_vs_size.png", baseline=(base["params"], base["valid_ppl"])
        )
        text += "\n## Compressed models\n\n" + compression_table(base, rows)
        text += "\n![perplexity vs size](ppl_vs_size.png)\n"
        low = [r for r in rows if "regularizer" in r]  # seed 000 stage-2 rows
        if low:
            plot_pareto(low, out / "lowrank_pareto.png", metric="valid_ppl",
                        dense=(base["params"], base["valid_ppl"]))  # fmt: skip
            text += "\n## Low rank (seed 000)\n\n" + lowrank_markdown(low, "valid_ppl")
            text += "\n![low rank Pareto front](lowrank_pareto.png)\n"
    write_text(out / "report.md", text)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    out = check_out_dir(args.out)
    seed_everything(cfg.train.seed)
    result = run_all(cfg, out, resume=not args.no_resume)
    write_report(result, out)
    base = result["baseline"]
    print(
        f"baseline: valid ppl {base['valid_ppl']:.2f}, test ppl {base['test_ppl']:.2f}, "
        f"{base['params']:,} params, {base['train_tokens_per_second']:,.0f} tokens/s"
    )
    for r in result["compressed"]:
        print(
            f"{r['variant']}: {r['effective_params']:,} params ({100 * r['size_fraction']:.1f} %), "
            f"valid ppl {r['valid_ppl']:.2f}"
        )
    print(f"report: {out / 'report.md'}")
    return 0
