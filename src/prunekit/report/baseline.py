"""The Markdown report of a baseline run, built from its metrics dict alone."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def baseline_markdown(metrics: dict[str, Any], machine: dict[str, Any]) -> str:
    """Render a short report: what was trained, how well, how big, how fast."""
    recipe = metrics["recipe"]
    rows = [
        ("valid perplexity (per token)", metrics["valid_ppl"]),
        ("test perplexity (per token)", metrics["test_ppl"]),
    ]
    if "test_word_ppl" in metrics:
        rows += [
            ("valid perplexity (per word)", metrics["valid_word_ppl"]),
            ("test perplexity (per word)", metrics["test_word_ppl"]),
        ]
    rows += [
        ("parameters", metrics["params"]),
        ("nonzero parameters", metrics["nonzero_params"]),
        ("size (bytes)", metrics["size_bytes"]),
        ("FLOPs per token", metrics["flops_per_token"]),
        ("optimizer steps", metrics["steps"]),
        ("training tokens", metrics["tokens_seen"]),
        ("training time (s)", metrics["train_seconds"]),
        ("training tokens/s", metrics["train_tokens_per_second"]),
    ]
    table = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in rows)
    model = ", ".join(f"{k}={v}" for k, v in recipe["model"].items())
    data = recipe["data"]
    return f"""# prunekit run: {metrics["name"]}

Corpus `{data["corpus"]}` ({metrics["corpus_words"]["train"]:,} train words), {data["tokenizer"]}
tokenizer with {metrics["vocab_size"]:,} units. Model: {model}.

| metric | value |
|---|---|
{table}

![loss and perplexity](curves.png)

Machine: {machine.get("cpu", "?")}, torch {machine.get("torch", "?")}, {metrics["threads"]} thread(s),
{metrics["world_size"]} process(es).
"""
