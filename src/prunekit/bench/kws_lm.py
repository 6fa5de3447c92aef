"""The LM row of `prunekit bench kws --lm`: a FastGRNN LM vs a one-layer LSTM LM (seed 002's PTB
row) on the recipe's corpus, same data and training section; perplexity and size.

The paper counts the recurrent layer only ("size excludes embeddings"); we report that (fp32
KB of `model.rnn`) beside the whole model's parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.bench.markdown import bench_header
from prunekit.config import RunConfig
from prunekit.eval.size import param_count
from prunekit.models import build_model
from prunekit.pipelines.lm_baseline import prepare_data, train_baseline

PAPER_PTB = {"fastgrnn": (116.11, 39), "lstm": (117.41, 2052)}  # test PPL, KB (seed 002)


def lstm_model(cfg: RunConfig) -> dict[str, Any]:
    """The LSTM counterpart of the recipe's FastGRNN model: one layer, same width and embedding."""
    m = cfg.model
    return {"arch": "rnn", "cell": "lstm", "n_layer": 1, "d_embed": m.get("d_embed", 256),
            "d_hidden": m.get("d_hidden", 256), "dropout": m.get("dropout", 0.2)}  # fmt: skip


def run_lm_rows(cfg: RunConfig, work: str | Path, progress: bool = False) -> dict[str, Any]:
    """Train both models (resuming finished runs) and return their metrics."""
    work = Path(work)
    vocab = prepare_data(cfg).tokenizer.vocab_size
    rows = []
    for name, model in (("fastgrnn", dict(cfg.model)), ("lstm", lstm_model(cfg))):
        run_cfg = cfg.model_copy(update={"model": model, "name": f"{cfg.name}-{name}"})
        metrics = train_baseline(run_cfg, work / name, progress=progress)
        rnn_params = param_count(build_model({**model, "vocab_size": vocab}).rnn)
        rows.append(
            {
                "row": name,
                "model": model,
                "test_ppl": metrics["test_ppl"],
                "test_word_ppl": metrics.get("test_word_ppl"),
                "params": metrics["params"],
                "rnn_params": rnn_params,
                "rnn_size_kb": 4 * rnn_params / 1024.0,
                "train_seconds": metrics["train_seconds"],
            }
        )
    return {"recipe": cfg.model_dump(mode="json"), "vocab_size": vocab, "rows": rows}


def lm_markdown(result: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    r = result["recipe"]
    note = (f"Corpus `{r['data']['corpus']}`, {r['data']['tokenizer']} vocabulary "
            f"{result['vocab_size']}, {r['train']['steps']} steps of batch {r['train']['batch_size']} "
            f"x {r['train']['bptt']} tokens, {r['train']['threads']} thread(s).")  # fmt: skip
    lines = bench_header(
        "FastGRNN vs LSTM language model (seed 002 PTB row)", command, machine, note
    )
    lines += [
        "| Model | Test PPL | Test word PPL | Recurrent layer KB (fp32) | All params | Paper (PTB) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        wp = row["test_word_ppl"]
        ppl, kb = PAPER_PTB[row["row"]]
        lines.append(
            f"| {row['row']} | {row['test_ppl']:.2f} | {'—' if wp is None else f'{wp:.2f}'} | "
            f"{row['rnn_size_kb']:.1f} | {row['params']:,} | {ppl} / {kb} KB |"
        )
    return "\n".join(lines) + "\n"
