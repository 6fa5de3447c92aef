"""Markdown for `prunekit bench kws`: the Table 1 row, the quantized details and the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prunekit.bench.kws_measure import QUANTIZED
from prunekit.bench.markdown import bench_header

PAPER_GOOGLE12 = {  # seed 002 Table 1 (accuracy %, KB)
    "fastgrnn_lsq_q": (92.10, 5.5),
    "fastgrnn": (93.18, 57),
    "fastrnn": (92.21, 56),
    "rnn": (73.25, 56),
    "gru": (93.15, 248),
    "lstm": (92.30, 212),
}


def _ms(timing: Mapping[str, Any], key: str) -> str:
    value = timing.get(key)
    return "—" if value is None else f"{value:.3f}"


def headline(r: Mapping[str, Any]) -> tuple[float, float]:
    """(accuracy, KB) as the table shows them: integer path and byte size for quantized rows."""
    if r["row"] in QUANTIZED and "int_accuracy" in r:
        return r["int_accuracy"], r["size_kb_q"]
    return r["accuracy"], r["size_kb"]


def table_lines(rows: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| Model | Accuracy % | Size KB | Float ms/clip | Eager ms/clip | Int numpy ms/clip | Int C ms/clip | Paper (Google-12) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        acc, kb = headline(r)
        t = r.get("timing", {})
        paper = PAPER_GOOGLE12.get(r["row"])
        ref = f"{paper[0]:.2f} % / {paper[1]} KB" if paper else "—"
        lines.append(
            f"| {r['label']} | {100 * acc:.2f} | {kb:.2f} | {_ms(t, 'float_ms')} | "
            f"{_ms(t, 'eager_ms')} | {_ms(t, 'int_numpy_ms')} | {_ms(t, 'int_c_ms')} | {ref} |"
        )
    return lines


def quantized_lines(rows: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| Model | Float acc % | Integer acc % | Int - float (points) | Int/float agreement % | C bit-equal | KB (paper count) | KB (C header) | fp32 KB |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        if r["row"] not in QUANTIZED or "int_accuracy" not in r:
            continue
        diff = 100 * (r["int_accuracy"] - r["accuracy"])
        lines.append(
            f"| {r['label']} | {100 * r['accuracy']:.2f} | {100 * r['int_accuracy']:.2f} | "
            f"{diff:+.2f} | {100 * r['int_float_agreement']:.2f} | {r.get('c_bit_equal')} | "
            f"{r['size_kb_q']:.2f} | {r['size_kb_c_header']:.2f} | {r['size_kb']:.2f} |"
        )
    return lines


def verdict_lines(rows: list[Mapping[str, Any]]) -> list[str]:
    """Seed 002's claim on our data (LSQ+Q >= 30x smaller than the GRU, <= 1 point lost), and
    ours vs EdgeML's FastGRNN."""
    by = {r["row"]: r for r in rows}
    if "fastgrnn_lsq_q" not in by or "gru" not in by:
        return ["(the verdict needs the FastGRNN (LSQ+Q) and GRU rows)"]
    acc_q, kb_q = headline(by["fastgrnn_lsq_q"])
    acc_g, kb_g = headline(by["gru"])
    ratio, lost = kb_g / kb_q, 100 * (acc_g - acc_q)
    met = ratio >= 30 and lost <= 1.0
    lines = [
        f"- FastGRNN (LSQ+Q) is {ratio:.1f}x smaller than the GRU ({kb_q:.2f} vs {kb_g:.2f} KB), "
        f"accuracy {-lost:+.2f} points vs the GRU (paper: 45x smaller, -1.05 points). "
        f"Target >= 30x smaller with at most 1 point lost: **{'met' if met else 'not met'}**."
    ]
    if "edgeml_fastgrnn" in by:
        lines.append(_versus_edgeml(by["fastgrnn_lsq_q"], by["edgeml_fastgrnn"]))
    return lines


def _versus_edgeml(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    (a_o, kb_o), (a_e, kb_e) = headline(ours), headline(theirs)
    clip = ours.get("spec", {}).get("grad_clip", 0.0)
    same = ("same data, hyperparameters and quantization; ours clips the gradient norm at "
            f"{clip:g}, EdgeML's trainer does not clip") if clip else (
            "same data, hyperparameters and quantization")  # fmt: skip
    text = (
        f"- Ours vs EdgeML's FastGRNN ({same}): integer "
        f"accuracy {100 * a_o:.2f} vs {100 * a_e:.2f} %, float {100 * ours['accuracy']:.2f} vs "
        f"{100 * theirs['accuracy']:.2f} %, {kb_o:.2f} vs {kb_e:.2f} KB"
    )
    t_o, t_e = ours.get("timing", {}), theirs.get("timing", {})
    if t_o.get("float_ms") and t_e.get("float_ms"):
        text += (
            f"; float {t_o['float_ms']:.3f} ms/clip ({t_o['float_path']}) vs "
            f"{t_e['float_ms']:.3f} ms/clip ({t_e['float_path']})"
        )
    return text + "."


def _clip_note(spec: dict[str, Any]) -> str:
    clip = spec.get("grad_clip", 0.0)
    return f"gradient norm clipped at {clip}" if clip else "no gradient clipping"


def _head_note(rows: list[dict[str, Any]]) -> str:
    """How the rows' classifiers started (row config `head_init`; absent in old rows: torch)."""
    starts = {r["label"]: r.get("config", {}).get("head_init", "torch") for r in rows}
    named = {"normal": "N(0, 1) (EdgeML's FastTrainer)", "torch": "nn.Linear's default"}
    if len(set(starts.values())) == 1:
        return f"every classifier starts at {named[next(iter(starts.values()))]}"
    return "classifier start: " + ", ".join(f"{k} {named[v]}" for k, v in starts.items())


def _notes(result: Mapping[str, Any]) -> list[str]:
    spec, data, rows = result["spec"], result["data"], result["rows"]
    timed = [r for r in rows if r.get("timing", {}).get("measured")]
    notes = [
        f"Data: provider `{data.get('provider', spec['data'])}`, {data['train']} / {data['dev']} / "
        f"{data['test']} clips (train / dev / test) of {data['frames']} x {data['features']}, "
        f"{data['classes']} classes.  ",
        f"Training: {spec['epochs']} epochs, batch {spec['batch_size']}, Adam lr {spec['lr']} "
        f"(RNN {spec['rnn_lr']}), decay {spec.get('decay', 'cosine')}, {_clip_note(spec)}; "
        f"FastGRNN (LSQ+Q): hidden "
        f"{spec['hidden']}, ranks {spec['w_rank']}/{spec['u_rank']}, kept {spec['s_w']}/"
        f"{spec['s_u']}, IHT every {spec['trimlevel']} steps; {_head_note(rows)}.  ",
        "Accuracy and size of the quantized rows are the integer path's and the byte count "
        "(int8 values, 1-byte sparse indices, as the paper counts); the other rows are fp32.  ",
    ]
    if not timed:
        notes.append(
            "Timings: not measured in this run (`--no-timing`: the machine was shared); "
            "`--timing-only` on an idle machine fills them in."
        )
    else:
        loads = [r["timing"].get("load_before") for r in timed]
        load = max((x for x in loads if x is not None), default=None)
        notes.append(
            f"Timings: batch 1, {timed[0]['timing']['threads']} thread(s), median over "
            f"{timed[0]['timing']['clips']} test clips; float = the fastest float path (named in "
            "kws.json), eager = the model's own forward"
            + (f"; 1-min load average before timing up to {load:.1f}" if load is not None else "")
            + "."
        )
    return notes


def to_markdown(result: Mapping[str, Any], machine: Mapping[str, Any], command: str) -> str:
    rows = result["rows"]
    lines = bench_header(
        "Keyword spotting: seed 002 Table 1 row", command, machine, *_notes(result)
    )
    lines += table_lines(rows) + ["", "## Quantized models", ""] + quantized_lines(rows)
    lines += ["", "## Verdict", "", *verdict_lines(rows)]
    edgeml = [r for r in rows if r["row"] == "edgeml_fastgrnn"]
    if edgeml:
        lines += ["", f"EdgeML row: {edgeml[0]['note']}; EdgeML's own size estimate "
                  f"{edgeml[0]['edgeml_reported_kb']:.2f} KB (fp32 nonzeros)."]  # fmt: skip
    return "\n".join(lines) + "\n"
