"""CPU inference latency of LMs: batch-1 incremental decoding and batched scoring.

Decoding is what on-device ASR does per hypothesis: feed one token, get its logits, keep the
KV cache / recurrent state. `decode_ms_per_token` primes the state with `context` tokens (untimed)
and times `steps` single-token `decode_step` calls; `compare_variants` does the same for several
models round-robin within each repetition, so machine noise hits them alike, and reports each
variant's speed-up over a baseline measured in the same run next to its FLOP reduction and size.

All timings are wall-clock under `torch.inference_mode()` with the model in eval mode; token ids are
fixed random draws, so every variant sees the same input. The thread count is set for the
measurement and restored after.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.bench.markdown import commit_label
from prunekit.errors import PrunekitError
from prunekit.eval.flops import flops_per_token
from prunekit.export import compact_size_report
from prunekit.export.timing import check_positive_int, num_threads, percentiles


def vocab_size_of(model: nn.Module) -> int:
    """Vocabulary size: `model.config.vocab_size`, else the first embedding table's rows.

    Raises:
        PrunekitError: neither is found.
    """
    config = getattr(model, "config", None)
    if isinstance(getattr(config, "vocab_size", None), int):
        return config.vocab_size
    for m in model.modules():
        if isinstance(getattr(m, "num_embeddings", None), int):
            return m.num_embeddings
    raise PrunekitError(
        f"cannot tell the vocabulary size of {type(model).__name__}: give it a `config.vocab_size` "
        "or an embedding layer"
    )


def _tokens(model: nn.Module, batch: int, length: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size_of(model), (batch, length), generator=g)


class _EvalMode:
    """Context: put models in eval mode, restore each one's previous mode after."""

    def __init__(self, models: Sequence[nn.Module]):
        self.models = list(models)
        self.modes = [m.training for m in self.models]

    def __enter__(self) -> None:
        for m in self.models:
            m.eval()

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self.models, self.modes, strict=True):
            m.train(mode)


def _check_decoder(model: nn.Module) -> None:
    if not (
        callable(getattr(model, "init_state", None))
        and callable(getattr(model, "decode_step", None))
    ):
        raise PrunekitError(
            f"{type(model).__name__} has no init_state/decode_step: decode latency needs a "
            "prunekit LM (TransformerLM, RNNLM or a compact copy of one)"
        )


def _decode_once(model: nn.Module, prompt: Tensor, steps: list[Tensor]) -> float:
    """ms per token of `len(steps)` one-token decode steps after priming with `prompt` (1, C)."""
    state = model.init_state(1)
    if prompt.size(1) > 0:
        _, state = model.decode_step(prompt, state)
    start = time.perf_counter()
    for token in steps:
        _, state = model.decode_step(token, state)
    return (time.perf_counter() - start) * 1e3 / len(steps)


def _decode_inputs(model: nn.Module, context: int, steps: int, seed: int) -> tuple[Tensor, list]:
    tokens = _tokens(model, 1, context + steps, seed)
    return tokens[:, :context], [tokens[:, i : i + 1] for i in range(context, context + steps)]


def _summary(samples: list[float], unit: str) -> dict[str, Any]:
    p10, median, p90 = percentiles(samples)
    return {
        f"median_{unit}": median,
        f"p10_{unit}": p10,
        f"p90_{unit}": p90,
        f"samples_{unit}": samples,
    }


def decode_ms_per_token(
    model: nn.Module,
    *,
    context: int = 64,
    steps: int = 32,
    repeats: int = 20,
    threads: int = 1,
    warmup: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Batch-1 incremental decoding latency in milliseconds per token.

    Args:
        model: an LM with `init_state(B)` and `decode_step(idx (B, T), state)`.
        context: tokens fed (untimed, one call) before timing; 0 starts from an empty state.
        steps: timed one-token steps per repetition.
        repeats: timed repetitions (each from a fresh state), after `warmup` untimed ones.
        threads: torch threads during the measurement.
        warmup: untimed repetitions first.
        seed: seed of the random token ids.

    Returns:
        {"median_ms", "p10_ms", "p90_ms" (ms/token over the repetitions), "samples_ms" (one per
        repetition), "context", "steps", "repeats", "threads", "batch_size" (1)}.

    Raises:
        PrunekitError: a non-decoder model or a bad count.
    """
    _check_decoder(model)
    check_positive_int("context", context, minimum=0)
    check_positive_int("steps", steps)
    check_positive_int("repeats", repeats)
    check_positive_int("warmup", warmup, minimum=0)
    prompt, step_tokens = _decode_inputs(model, context, steps, seed)
    with num_threads(threads), torch.inference_mode(), _EvalMode([model]):
        for _ in range(warmup):
            _decode_once(model, prompt, step_tokens)
        samples = [_decode_once(model, prompt, step_tokens) for _ in range(repeats)]
    meta = {"context": context, "steps": steps, "repeats": repeats, "threads": threads}
    return {**_summary(samples, "ms"), **meta, "batch_size": 1}


def scoring_tokens_per_s(
    model: nn.Module,
    *,
    batch_size: int = 8,
    seq_len: int = 64,
    repeats: int = 10,
    threads: int = 1,
    warmup: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Throughput of batched full-sequence scoring (`model(idx)` on (batch_size, seq_len)).

    Returns:
        {"median_tokens_per_s", "p10_tokens_per_s", "p90_tokens_per_s" (tokens scored per second),
        "samples_tokens_per_s", "batch_size", "seq_len", "repeats", "threads"}.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    check_positive_int("repeats", repeats)
    check_positive_int("warmup", warmup, minimum=0)
    idx = _tokens(model, batch_size, seq_len, seed)
    samples = []
    with num_threads(threads), torch.inference_mode(), _EvalMode([model]):
        for _ in range(warmup):
            model(idx)
        for _ in range(repeats):
            start = time.perf_counter()
            model(idx)
            samples.append(idx.numel() / (time.perf_counter() - start))
    meta = {"batch_size": batch_size, "seq_len": seq_len, "repeats": repeats, "threads": threads}
    return {**_summary(samples, "tokens_per_s"), **meta}


def interleaved_orders(names: Sequence[str], repeats: int, seed: int = 0) -> list[list[str]]:
    """One seeded random order of `names` per repetition: every variant runs once per repetition
    and none always runs right after the same one (a fixed or rotated order would give the
    variant after the largest model a flushed cache in every sample)."""
    rng = random.Random(seed)
    return [rng.sample(list(names), len(names)) for _ in range(repeats)]


def compare_variants(
    variants: Mapping[str, nn.Module],
    *,
    baseline: str,
    threads: Sequence[int] = (1, 2),
    context: int = 64,
    steps: int = 32,
    repeats: int = 20,
    warmup: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Decode latency of several models measured interleaved, with speed-ups over `baseline`.

    Within each repetition every variant decodes once, in the order `interleaved_orders` gives,
    so slow periods of a shared machine hit all variants alike; speed-ups are ratios of medians
    from the same run. FLOPs are counted at the mean attended context of the timed tokens,
    `context + (steps + 1) // 2`.

    Args:
        variants: name -> model (all with the same vocabulary).
        baseline: the name whose median is the reference (e.g. the `fastest_dense` model).
        threads: thread counts to measure, each a separate interleaved run.
        context, steps, repeats, warmup, seed: as in `decode_ms_per_token`.

    Returns:
        {"baseline", "context", "steps", "repeats", "threads", "flops_context_len",
        "variants": {name: {"flops_per_token", "flop_ratio" (baseline FLOPs / variant FLOPs),
        "size" (compact_size_report)}},
        "by_threads": {str(n): {name: {"median_ms", "p10_ms", "p90_ms", "samples_ms",
        "speedup" (baseline median / variant median)}}}}.

    Raises:
        PrunekitError: `baseline` is not a variant, or a variant cannot decode.
    """
    if baseline not in variants:
        raise PrunekitError(
            f"baseline={baseline!r} is not one of the variants {sorted(variants)}: name one of them"
        )
    for model in variants.values():
        _check_decoder(model)
    check_positive_int("repeats", repeats)
    check_positive_int("steps", steps)
    check_positive_int("context", context, minimum=0)
    names = list(variants)
    flops_ctx = context + (steps + 1) // 2
    flops = {n: flops_per_token(variants[n], flops_ctx) for n in names}
    result: dict[str, Any] = {
        "baseline": baseline,
        "context": context,
        "steps": steps,
        "repeats": repeats,
        "threads": list(threads),
        "flops_context_len": flops_ctx,
        "variants": {
            n: {
                "flops_per_token": flops[n],
                "flop_ratio": flops[baseline] / flops[n] if flops[n] else None,
                "size": compact_size_report(variants[n]),
            }
            for n in names
        },
        "by_threads": {},
    }
    prompt, step_tokens = _decode_inputs(variants[baseline], context, steps, seed)
    for n_threads in threads:
        samples: dict[str, list[float]] = {n: [] for n in names}
        with num_threads(n_threads), torch.inference_mode(), _EvalMode(list(variants.values())):
            for name in names:
                for _ in range(warmup):
                    _decode_once(variants[name], prompt, step_tokens)
            for order in interleaved_orders(names, repeats, seed):
                for name in order:
                    samples[name].append(_decode_once(variants[name], prompt, step_tokens))
        base = statistics.median(samples[baseline])
        result["by_threads"][str(n_threads)] = {
            n: {**_summary(s, "ms"), "speedup": base / statistics.median(s)}
            for n, s in samples.items()
        }
    return result


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def latency_markdown(result: Mapping[str, Any], machine: Mapping[str, Any], command: str) -> str:
    """A Markdown report of a `compare_variants` result: one row per variant.

    Columns: ms/token at the first thread count (median, p10-p90), speed-up over the baseline,
    FLOP ratio, speed-up / FLOP ratio (how much of the FLOP reduction became real speed), size in
    bytes, then ms/token and speed-up at each further thread count.
    """
    threads = [str(n) for n in result["threads"]]
    first, rest = threads[0], threads[1:]

    def th(n: str) -> str:
        return f"{n} thread" + ("" if n == "1" else "s")

    header = [
        "variant",
        f"ms/token ({th(first)})",
        "speed-up",
        "FLOP ratio",
        "speed-up / FLOP ratio",
        "size bytes",
    ]
    for n in rest:
        header += [f"ms/token ({th(n)})", f"speed-up ({th(n)})"]
    lines = [
        "# Decode latency: compressed variants vs the dense baseline",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu', 'unknown')}, {machine.get('cores', '?')} cores, "
        f"torch {machine.get('torch', '?')}, python {machine.get('python', '?')}, "
        f"commit {commit_label(machine)}  ",
        f"Batch-1 incremental decoding: {result['context']} context tokens, then "
        f"{result['steps']} timed one-token steps; {result['repeats']} repetitions, variants "
        f"interleaved. Baseline: `{result['baseline']}`. FLOPs at context "
        f"{result['flops_context_len']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for name, info in result["variants"].items():
        row0 = result["by_threads"][first][name]
        ratio = info["flop_ratio"]
        cells = [
            f"`{name}`",
            f"{row0['median_ms']:.3f} ({row0['p10_ms']:.3f}-{row0['p90_ms']:.3f})",
            f"{row0['speedup']:.2f}x",
            _fmt(ratio) + ("x" if ratio is not None else ""),
            _fmt(row0["speedup"] / ratio if ratio else None),
            f"{info['size']['size_bytes']:,}",
        ]
        for n in rest:
            r = result["by_threads"][n][name]
            cells += [f"{r['median_ms']:.3f}", f"{r['speedup']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Speed-up = baseline median / variant median from the same interleaved run. FLOP ratio = "
        "baseline FLOPs / variant FLOPs per token (int8 keeps the FLOP count and makes each "
        "operation cheaper, so its ratio is 1). Size counts int8 weights at 1 byte plus their "
        "scales, CSR weights as fp32 values plus int32 indices.",
        "",
    ]
    return "\n".join(lines)
