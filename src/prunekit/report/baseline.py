"""The Markdown report of a baseline run, built from its metrics dict alone."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pair(metrics: dict[str, Any], key: str, fmt: str = "{:,.2f}") -> str:
    return " / ".join(fmt.format(metrics[f"{s}_{key}"]) for s in ("valid", "test"))


def vocabulary_line(metrics: dict[str, Any]) -> str:
    """What the vocabulary is: its kind and size, and for words whether it was capped."""
    vocab = metrics.get("vocab") or {"kind": metrics["recipe"]["data"]["tokenizer"]}
    size = metrics["vocab_size"]
    if vocab["kind"] != "word":
        return f"{vocab['kind']} tokenizer with {size:,} units"
    words = vocab.get("train_words")
    if not vocab.get("cap"):
        return f"word vocabulary of all {words:,} words of the train split (+ <unk>, <eos>)"
    return (
        f"word vocabulary capped at {size:,} (data.vocab_size={vocab['cap']:,}): the "
        f"{size - 2:,} most frequent of {words:,} train words, the rest mapped to <unk>"
    )


def steps_line(metrics: dict[str, Any]) -> str:
    """Optimizer steps, and how the learning-rate schedule ran when the run was continued."""
    history = metrics.get("steps_history") or []
    text = f"{metrics['steps']:,}"
    if len(history) > 1:
        parts = [
            f"from step {h['from_step']:,} under a {h['steps']:,}-step schedule" for h in history
        ]
        text += " (continued: " + "; ".join(parts) + ")"
    return text


def _rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("perplexity per token (valid / test)", _pair(metrics, "ppl")),
    ]
    if "test_word_ppl" in metrics:
        rows.append(("perplexity per word (valid / test)", _pair(metrics, "word_ppl")))
    if "test_tokens_per_word" in metrics:
        rows.append(("tokens per word (valid / test)", _pair(metrics, "tokens_per_word", "{:.3f}")))
    if "test_oov_rate" in metrics:
        rate = _pair(metrics, "oov_rate", "{:.2%}").replace("%", " %")
        rows.append(("OOV rate: share of <unk> tokens (valid / test)", rate))
    best = metrics.get("best_step")
    rows += [
        ("parameters", metrics["params"]),
        ("nonzero parameters", metrics["nonzero_params"]),
        ("size (bytes, fp32 tensors)", metrics["size_bytes"]),
        ("FLOPs per token", metrics["flops_per_token"]),
        ("optimizer steps", steps_line(metrics)),
    ]
    if best is not None:
        rows.append(("evaluated checkpoint", f"best: step {best:,} (lowest validation loss)"))
    rows += [
        ("training tokens", metrics["tokens_seen"]),
        ("training time (s)", metrics["train_seconds"]),
        ("training tokens/s", metrics["train_tokens_per_second"]),
    ]
    return rows


def baseline_markdown(
    metrics: dict[str, Any], machine: dict[str, Any], command: str | None = None
) -> str:
    """Render a short report: what was trained, on what, how well, how big, how fast.

    The title names the recipe and the corpus (a run of the demo recipe on another corpus is
    not "demo"); per-word perplexity comes with the tokens-per-word ratio that relates it to the
    per-token one, and every vocabulary with its OOV rate.
    """
    recipe = metrics["recipe"]
    data = recipe["data"]
    table = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in _rows(metrics))
    model = ", ".join(f"{k}={v}" for k, v in recipe["model"].items())
    sha = metrics.get("corpus_sha256", "")
    corpus = f"Corpus `{data['corpus']}`" + (f" (sha256 {sha[:12]})" if sha else "")
    cmd = f"Command: `{command}`\n\n" if command else ""
    return f"""# prunekit run: recipe `{metrics["name"]}` on corpus `{data["corpus"]}`

{cmd}{corpus}: {metrics["corpus_words"]["train"]:,} train words; {vocabulary_line(metrics)}.
Model: {model}.

| metric | value |
|---|---|
{table}

Per-word perplexity = exp(total loss / words), words counting one `<eos>` per non-empty line; it
is per-token perplexity to the power of the tokens-per-word ratio.

![loss and perplexity](curves.png)

Machine: {machine.get("cpu", "?")}, torch {machine.get("torch", "?")}, {metrics["threads"]} thread(s),
{metrics["world_size"]} process(es).
"""
