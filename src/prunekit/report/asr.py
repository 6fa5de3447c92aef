"""The report of a `prunekit asr` run (report.md + wer.png), built from its metrics.json alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prunekit.atomic import write_text, write_with  # noqa: E402
from prunekit.bench.markdown import bench_header  # noqa: E402

LABELS = {"no_lm": "no LM", "lm": "with LM", "lm_ilm": "with LM - ILM"}
GROUPS = {"all": "all test", "seen_voices": "seen voices", "unseen_voices": "unseen voices"}
DASH = "–"


def pct(x: float | None, digits: int = 2) -> str:
    """A rate as a percentage ('12.34'), a dash when missing."""
    return DASH if x is None else f"{100 * x:.{digits}f}"


def relative_change(new: float | None, ref: float | None) -> float | None:
    """(new - ref) / ref, None where undefined."""
    if new is None or not ref:
        return None
    return (new - ref) / ref


def signed_pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:+.1f} %"


def p_value(p: float | None) -> str:
    return DASH if p is None else (f"{p:.2g}" if p >= 1e-4 else "< 1e-4")


def _rates_table(systems: Mapping[str, Any]) -> list[str]:
    lines = ["| system | fusion (lambda, mu, beta) | " +
             " | ".join(f"WER {g}" for g in GROUPS.values()) + " | CER all | CER unseen |",
             "|---|---|" + "---:|" * (len(GROUPS) + 2)]  # fmt: skip
    for name, s in systems.items():
        p, r = s["params"], s["rates"]
        weights = DASH if name == "no_lm" else (
            f"{p['lm_weight']:g}, {p['ilm_weight']:g}, {p['word_bonus']:g}")  # fmt: skip
        wers = " | ".join(pct(r[g]["wer"]) for g in GROUPS)
        lines.append(f"| {LABELS.get(name, name)} | {weights} | {wers} | "
                     f"{pct(r['all']['cer'])} | {pct(r['unseen_voices']['cer'])} |")  # fmt: skip
    return lines


def _timing_table(systems: Mapping[str, Any]) -> list[str]:
    lines = ["| system | decode RTF | LM share of decode | acoustic model RTF | total RTF | "
             "LM calls | threads |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, s in systems.items():
        t = s["timing"]
        lines.append(
            f"| {LABELS.get(name, name)} | {t['rtf']:.3f} | {100 * t['lm_share']:.0f} % | "
            f"{t['am_rtf']:.3f} | {t['total_rtf']:.3f} | {t['lm_calls']:,} | {t['threads']} |"
        )
    return lines


def _significance(m: Mapping[str, Any]) -> list[str]:
    lines = ["| comparison | segments | errors (system) | errors (reference) | Z | p | "
             "p < 0.005 |", "|---|---:|---:|---:|---:|---:|:---:|"]  # fmt: skip
    names = {"lm_vs_no_lm": "with LM vs no LM", "lm_ilm_vs_no_lm": "with LM - ILM vs no LM",
             "lm_ilm_vs_lm": "with LM - ILM vs with LM"}  # fmt: skip
    for key, r in m.get("significance", {}).items():
        lines.append(
            f"| {names.get(key, key)} | {r['segments']} | {r['errors1']} | {r['errors2']} | "
            f"{r['z']:.2f} | {p_value(r['p_value'])} | {'yes' if r['significant'] else 'no'} |"
        )
    return lines


def _frequency(m: Mapping[str, Any]) -> list[str]:
    by = m.get("wer_by_frequency") or {}
    if not by:
        return []
    n = len(next(iter(by.values())))
    head = " | ".join(f"{100 * (i + 1) // n} %" for i in range(n))
    lines = [f"| system | {head} |", "|---|" + "---:|" * n]
    for name, groups in by.items():
        lines.append(f"| {LABELS.get(name, name)} | " +
                     " | ".join(pct(g["rate"]) for g in groups) + " |")  # fmt: skip
    return lines


def difficulty_table(record: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """Markdown rows of `eval.wer.wer_by_difficulty`: WER per system by the no-LM CER, and each
    fused system's relative change against the first system (the acoustic model alone)."""
    edges, systems = record["edges"], record["systems"]
    names = list(systems)
    ranges = [f"< {edges[0]:.0%}"] + [
        f"{a:.0%}-{b:.0%}" for a, b in zip(edges, edges[1:], strict=False)
    ]
    ranges.append(f">= {edges[-1]:.0%}")
    base = systems[names[0]]
    head = ["no-LM CER", "utterances", "words", *(f"WER {labels.get(n, n)}" for n in names),
            *(f"change {labels.get(n, n)}" for n in names[1:])]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for k, label in enumerate(ranges):
        if not record["utterances"][k]:
            continue
        b = base[k]
        rates = [pct(systems[n][k]["rate"]) for n in names]
        change = [signed_pct(relative_change(systems[n][k]["rate"], b["rate"])) for n in names[1:]]
        lines.append(f"| {label} | {record['utterances'][k]} | {b['ref']} | "
                     + " | ".join(rates + change) + " |")  # fmt: skip
    return lines


DIFFICULTY_NOTE = (
    "Test utterances grouped by the character error rate of the acoustic model alone (no LM): "
    "how much the LM can fix depends on how well the acoustic model heard the utterance."
)


def _difficulty(m: Mapping[str, Any]) -> list[str]:
    record = m.get("wer_by_difficulty")
    if not record:
        return []
    return ["## WER by acoustic difficulty (%)", "", DIFFICULTY_NOTE, "",
            *difficulty_table(record, LABELS), ""]  # fmt: skip


def _facts(m: Mapping[str, Any]) -> list[str]:
    c, am = m["corpus"], m["am"]
    hours = ", ".join(f"{s} {h:.2f} h ({c['utterances'][s]} utt)" for s, h in c["hours"].items())
    model = am.get("am", {}).get("model", {})
    lines = [
        f"- Speech corpus `{c['name']}`: {hours}; {c['unseen_test_utterances']} test utterances "
        f"by {len(c['unseen_test_voices'])} voices never heard in training."
        + (f" Built in {c['build_seconds'] / 60:.0f} min." if c.get("build_seconds") else ""),
        f"- Acoustic model: {', '.join(f'{k}={v}' for k, v in model.items())}; "
        f"{am.get('params', 0):,} parameters, {am.get('steps')} steps ({am.get('epochs', 0):.1f} "
        f"epochs) in {am.get('train_seconds', 0) / 60:.1f} min at {am.get('threads')} thread(s) "
        f"({am.get('train_frames_per_second', 0):,.0f} frames/s).",
    ]
    for key, label in (("lm", "Fused LM"), ("source_lm", "Source LM (density ratio)")):
        lm = m.get(key)
        if not lm:
            continue
        what = (
            f"given: {lm['given']} ({lm.get('kind')})"
            if "given" in lm
            else f"{', '.join(f'{k}={v}' for k, v in (lm.get('model') or {}).items())}; "
            f"trained {lm.get('steps')} steps in {lm.get('train_seconds', 0) / 60:.1f} min"
        )
        ppl = f"; valid perplexity {lm['valid_ppl']:.1f} per token" if "valid_ppl" in lm else ""
        if "valid_word_ppl" in lm:
            ppl += f", {lm['valid_word_ppl']:.1f} per word"
        lines.append(f"- {label}: {what}, {lm.get('params', 0):,} parameters{ppl}.")  # fmt: skip
    return lines


def _times(m: Mapping[str, Any]) -> list[str]:
    """Where the time went: building, training, tuning and decoding (as recorded)."""
    rows = [("speech corpus build (first call)", m["corpus"].get("build_seconds")),
            ("acoustic model training", m["am"].get("train_seconds")),
            ("fused LM training", (m.get("lm") or {}).get("train_seconds")),
            ("source LM training", (m.get("source_lm") or {}).get("train_seconds"))]  # fmt: skip
    rows += [(f"fusion tuning on dev ({LABELS.get(k, k)})", t.get("seconds"))
             for k, t in m.get("tuning", {}).items()]  # fmt: skip
    rows += [(f"test decoding ({LABELS.get(k, k)})", s["timing"]["decode_seconds"])
             for k, s in m["systems"].items()]  # fmt: skip
    lines = ["| step | minutes |", "|---|---:|"]
    lines += [f"| {name} | {sec / 60:.1f} |" for name, sec in rows if sec is not None]
    phases = m.get("phase_seconds") or {}
    if phases:
        lines += ["", "This call's wall clock by phase (cached stages take seconds): " +
                  ", ".join(f"{k} {v / 60:.1f} min" for k, v in phases.items()) + "."]  # fmt: skip
    return lines


def asr_markdown(m: Mapping[str, Any], machine: Mapping[str, Any], command: str) -> str:
    """The Markdown report of a `prunekit asr` run's metrics."""
    change = m.get("wer_change_vs_no_lm", {})
    best = "lm_ilm" if "lm_ilm" in change else "lm"
    unseen = change.get(best, {}).get("unseen_voices")
    lines = bench_header(f"prunekit asr: {m['name']}", command, machine)
    lines += [
        f"Unseen voices: WER {pct(m['systems']['no_lm']['rates']['unseen_voices']['wer'])} % "
        f"without an LM, {pct(m['systems'][best]['rates']['unseen_voices']['wer'])} % "
        f"{LABELS[best]} ({signed_pct(unseen)} relative).", "",
        *_facts(m), "", "## Test WER / CER (%)", "", *_rates_table(m["systems"]), "",
        "Greedy decoding (no beam, no LM): WER "
        f"{pct(m['am'].get('greedy', {}).get('test', {}).get('all', {}).get('wer'))} %. "
        "Fusion weights were tuned on dev (`fusion tuning` below); the ILM is the source LM.", "",
        "![WER by system and voice group](wer.png)", "", "## Significance (MAPSSWE)", "",
        *_significance(m), "", "## WER by word-frequency quartile (%)", "",
        "Reference words grouped by their frequency in the fused LM's training text, from the "
        "most frequent quarter of the tokens to the rarest (unseen words included).", "",
        *_frequency(m), "", *_difficulty(m), "## Decoding speed", "",
        "Real-time factor = seconds / audio seconds; decode = beam search + LM calls; the "
        "acoustic model's batched forward pass is timed apart.", "",
        *_timing_table(m["systems"]), "", "## Times", "", *_times(m), "",
        "## Fusion tuning on dev", "",
    ]  # fmt: skip
    for name, t in m.get("tuning", {}).items():
        b = t["best"]
        lines.append(
            f"- {LABELS.get(name, name)}: lambda {b['lm_weight']:g}, mu {b['ilm_weight']:g}, "
            f"beta {b['word_bonus']:g}: dev WER {pct(t['dev_wer'])} % ({t['points']} points"
            + (f", {t['seconds'] / 60:.1f} min)" if t.get("seconds") else ")")
        )
    lines += ["", "## Examples (test)", ""]
    for ex in m.get("examples", []):
        lines += [f"- ref: {ex['ref']}"] + [
            f"  - {LABELS.get(k, k)}: {v}" for k, v in ex.items() if k != "ref"
        ]
    return "\n".join(lines) + "\n"


def plot_wer(systems: Mapping[str, Any], path: str | Path) -> None:
    """Bars: WER per system for all / seen / unseen test voices."""
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(systems))
    for k, (name, s) in enumerate(systems.items()):
        values = [100 * (s["rates"][g]["wer"] or 0) for g in GROUPS]
        xs = [i + k * width for i in range(len(GROUPS))]
        ax.bar(xs, values, width, label=LABELS.get(name, name))
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(GROUPS))])
    ax.set_xticklabels(list(GROUPS.values()))
    ax.set(ylabel="WER (%)", title="Test word error rate")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def write_asr_report(
    m: Mapping[str, Any], out: str | Path, machine: Mapping[str, Any], command: str
) -> Path:
    """report.md and wer.png in `out`; returns the report's path."""
    out = Path(out)
    plot_wer(m["systems"], out / "wer.png")
    write_text(out / "report.md", asr_markdown(m, machine, command))
    return out / "report.md"
