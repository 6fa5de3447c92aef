"""Tables 4-6 of seed 004 from a `prunekit bench asr` folder's JSON alone, beside the paper's.

    Table 4   WER of one-shot vs incremental pruning by size, MAPSSWE of the pair
    Table 5   WER of from-scratch, pruned (unstructured / structured / factorized) and no NNLM,
              MAPSSWE against the from-scratch model of the same size
    Table 6   relative WER change of pruned vs from scratch by word-frequency quartile
    speed     1-thread decoding real-time factor with each compact LM vs the dense one

A `*` marks a comparison that is NOT significant (MAPSSWE p > 0.005), as in the paper. The
paper's WERs are of its 102M-parameter transducer on its data; compare orderings and relative
changes, not absolute values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prunekit.atomic import write_json, write_text, write_with  # noqa: E402
from prunekit.bench.markdown import bench_header  # noqa: E402
from prunekit.errors import PrunekitError  # noqa: E402
from prunekit.eval.mapsswe import mapsswe  # noqa: E402
from prunekit.eval.wer import wer_by_difficulty  # noqa: E402
from prunekit.report.asr import DIFFICULTY_NOTE, difficulty_table, relative_change  # noqa: E402
from prunekit.report.published import T4, T4_BASELINE, T4_NOT_SIGNIFICANT, T5, T6  # noqa: E402

DASH = "–"
ALPHA = 0.005
PAPER_T5_SIZE = 0.5  # the paper's 10M of 20M
COLORS = {"baseline": "k", "oneshot": "C0", "incremental": "C1", "scratch": "C2"}


def pct_change(new: float | None, ref: float | None) -> float | None:
    change = relative_change(new, ref)
    return None if change is None else 100.0 * change


def _f(x: float | None, fmt: str = ".2f") -> str:
    return DASH if x is None else format(x, fmt)


def _d(x: float | None) -> str:
    return DASH if x is None else f"{x:+.1f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def size_tag(size: float) -> str:
    return f"s{round(100 * size, 4):g}"


class BenchData:
    """A bench folder's decode cells, grid cells and references."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        path = folder / "bench.json"
        if not path.is_file():
            raise PrunekitError(f"{folder} is not a `prunekit bench asr` folder (no bench.json)")
        self.meta = json.loads(path.read_text(encoding="utf-8"))
        refs = folder / "refs.json"
        self.refs: list[str] = json.loads(refs.read_text()) if refs.is_file() else []
        self.cells: dict[str, dict[str, Any]] = {}
        for p in sorted((folder / "cells").glob("decode-*.json")):
            cell = json.loads(p.read_text(encoding="utf-8"))
            self.cells[cell["lm"] or "no-lm"] = cell
        self.t5_sizes: list[float] = self.meta.get("t5_sizes", [])
        self.table4_sizes: list[float] = self.meta.get("table4_sizes", [])

    def wer(self, lm: str, group: str = "all") -> float | None:
        cell = self.cells.get(lm)
        return None if cell is None else 100 * cell["rates"][group]["wer"]

    def ppl(self, lm: str) -> float | None:
        cell = self.cells.get(lm)
        return None if cell is None else cell.get("lm_facts", {}).get("valid_ppl")

    def test(self, a: str, b: str) -> dict[str, Any] | None:
        """MAPSSWE of LM a against LM b on the test set (None if either is missing)."""
        if a not in self.cells or b not in self.cells or not self.refs:
            return None
        r = mapsswe(self.refs, self.cells[a]["texts"], self.cells[b]["texts"])
        return {"p": r.p_value, "z": r.z, "significant": r.p_value < ALPHA}

    def ids(self) -> dict[str, Any]:
        """Cell ids by role, read from the bench's plan."""
        t4 = self.meta["grid_cells"]["table4"]
        t5 = self.meta["grid_cells"]["table5"]
        return {
            "oneshot": {s: next((c for c in t4 if c.startswith("oneshot") and
                                 f"-{size_tag(s)}-" in c), None) for s in self.table4_sizes},
            "incremental": {s: next((c for c in t4 if c.startswith("incremental") and
                                     f"-{size_tag(s)}-" in c), None) for s in self.table4_sizes},
            "t5": {s: {m: next((c for c in t5 if f"-{m}-{size_tag(s)}-" in c), None)
                       for m in ("unstructured", "structured", "factorized")}
                   | {"scratch": f"scratch-{size_tag(s)}-seed0"} for s in self.t5_sizes},
        }  # fmt: skip


def _mark(t: dict[str, Any] | None) -> str:
    if t is None:
        return DASH
    return f"{t['p']:.2g}" + ("*" if not t["significant"] else "")


def table4(d: BenchData) -> tuple[str, list[dict[str, Any]]]:
    ids, rows, facts = d.ids(), [], []
    for s in d.table4_sizes:
        one, inc = ids["oneshot"][s], ids["incremental"][s]
        w1, w2 = d.wer(one), d.wer(inc)
        p1, p2 = d.ppl(one), d.ppl(inc)
        t = d.test(inc, one)
        pd, pv = T4["dictation"].get(s), T4["va"].get(s)
        paper = DASH if pd is None else (
            f"{pd[0]:.2f} / {pd[1]:.2f} ({pct_change(pd[1], pd[0]):+.1f}"
            f"{'*' if s in T4_NOT_SIGNIFICANT['dictation'] else ''}); "
            f"{pv[0]:.2f} / {pv[1]:.2f} ({pct_change(pv[1], pv[0]):+.1f}"
            f"{'*' if s in T4_NOT_SIGNIFICANT['va'] else ''})")  # fmt: skip
        rows.append([f"{100 * s:g} %", f"{_f(p1, '.1f')} / {_f(p2, '.1f')}",
                     _d(pct_change(p2, p1)), f"{_f(w1)} / {_f(w2)}", _d(pct_change(w2, w1)),
                     _mark(t), paper])  # fmt: skip
        facts.append({"size": s, "ppl": (p1, p2), "wer": (w1, w2), "test": t})
    head = ["size", "PPL one-shot / incr.", "PPL Δ%", "WER one-shot / incr.", "WER Δ%",
            "MAPSSWE p", "paper WER dict.; VA (Δ%)"]  # fmt: skip
    base = (f"Baseline (dense) WER {_f(d.wer('baseline'))} % (PPL {_f(d.ppl('baseline'), '.1f')});"
            f" paper {T4_BASELINE['dictation']:.2f} / {T4_BASELINE['va']:.2f}.\n")  # fmt: skip
    return base + "\n" + _table(head, rows), facts


def table5(d: BenchData) -> tuple[str, list[dict[str, Any]]]:
    ids, rows, facts = d.ids(), [], []

    def row(label: str, lm: str, ref: str | None, paper: tuple[float, float] | None) -> None:
        t = d.test(lm, ref) if ref and ref != lm else None
        cell = d.cells.get(lm, {})
        params = cell.get("lm_facts", {}).get("effective_params") or cell.get(
            "lm_facts", {}).get("params")  # fmt: skip
        rows.append([label, DASH if params is None else f"{params / 1e6:.2f}M",
                     _f(d.ppl(lm), ".1f"), _f(d.wer(lm)), _f(d.wer(lm, "unseen_voices")),
                     _mark(t), DASH if paper is None else f"{paper[0]:.2f} / {paper[1]:.2f}"])  # fmt: skip
        facts.append({"row": label, "lm": lm, "ppl": d.ppl(lm), "wer": d.wer(lm),
                      "wer_unseen": d.wer(lm, "unseen_voices"), "test_vs_scratch": t})  # fmt: skip

    row("100 % from scratch (baseline)", "baseline", None, T5["scratch-100"])
    for s in d.t5_sizes:
        names = ids["t5"][s]
        on_paper = abs(s - PAPER_T5_SIZE) < 1e-9
        row(f"{100 * s:g} % from scratch", names["scratch"], None,
            T5["scratch-10"] if on_paper else None)  # fmt: skip
        for m in ("unstructured", "structured", "factorized"):
            if names[m]:
                row(f"{100 * s:g} % {m}", names[m], names["scratch"], T5[m] if on_paper else None)
    row("no NNLM", "no-lm", None, T5["no-lm"])
    head = ["NNLM", "params", "valid PPL", "WER all", "WER unseen voices",
            "MAPSSWE p vs scratch", "paper WER dict. / VA"]  # fmt: skip
    return _table(head, rows), facts


def table6(d: BenchData) -> tuple[str, list[dict[str, Any]]]:
    ids, out, facts = d.ids(), [], []
    for s in d.t5_sizes:
        scratch, pruned = ids["t5"][s]["scratch"], ids["t5"][s]["unstructured"]
        if scratch not in d.cells or pruned not in d.cells:
            continue
        a, b = d.cells[scratch]["wer_by_frequency"], d.cells[pruned]["wer_by_frequency"]
        on_paper = abs(s - PAPER_T5_SIZE) < 1e-9
        rows, deltas = [], []
        for q, (ga, gb) in enumerate(zip(a, b, strict=True)):
            delta = pct_change(gb["rate"], ga["rate"])
            deltas.append(delta)
            paper = f"{T6['dictation'][q]:+.1f} / {T6['va'][q]:+.1f}" if on_paper else DASH
            rows.append([f"{100 * (q + 1) // len(a)} %", str(ga["ref"]), _f(100 * ga["rate"]),
                         _f(100 * gb["rate"]), _d(delta), paper])  # fmt: skip
        out.append(f"At {100 * s:g} % of the baseline ({pruned} vs {scratch}):\n\n" + _table(
            ["quartile", "ref words", "WER scratch", "WER pruned", "Δ%",
             "paper Δ% dict. / VA"], rows))  # fmt: skip
        facts.append({"size": s, "delta_pct": deltas})
    return "\n".join(out) or "(cells not decoded yet)\n", facts


def per_token(timing: Mapping[str, Any]) -> float | None:
    """Seconds the fused LM spent per token it scored (comparable across LMs whose decodes score
    different numbers of words)."""
    tokens = timing.get("fused_lm_tokens")
    return timing["fused_lm_seconds"] / tokens if tokens else None


def speed_table(d: BenchData) -> tuple[str, list[dict[str, Any]]]:
    base = d.cells.get("baseline")
    ref = per_token(base["timing"]) if base else None
    rows, facts = [], []
    for lm, cell in sorted(d.cells.items(), key=lambda kv: -(kv[1].get("lm_facts", {}).get(
            "compact_nonzero") or 0)):  # fmt: skip
        if lm == "no-lm":
            continue
        t, f = cell["timing"], cell["lm_facts"]
        mine = per_token(t)
        speedup = ref / mine if ref and mine else None
        rows.append([lm, f"{f['compact_nonzero'] / 1e6:.2f}M", f"{f['compact_bytes'] / 1e6:.2f}",
                     f"{t['rtf']:.3f}", f"{100 * t['fused_lm_share']:.0f} %",
                     _f(None if mine is None else 1e3 * mine, ".3f"), _f(speedup, ".2f")])  # fmt: skip
        facts.append({"lm": lm, "rtf": t["rtf"], "fused_lm_share": t["fused_lm_share"],
                      "lm_speedup_vs_dense": speedup, "compact_bytes": f["compact_bytes"]})  # fmt: skip
    head = ["LM (compact export, fast runtime)", "nonzero params", "MB", "decode RTF",
            "fused LM share", "fused LM ms / token", "speed-up vs dense"]  # fmt: skip
    return _table(head, rows), facts


def verdict(holds: Sequence[bool]) -> str:
    if not holds:
        return "not measured yet"
    if all(holds):
        return "reproduced"
    return "not reproduced" if not any(holds) else f"partly ({sum(holds)} of {len(holds)})"


def findings(d: BenchData, t4: list[dict], t5: list[dict], t6: list[dict]) -> list[dict]:
    out = []

    def add(text: str, paper: str, holds: list[bool], ours: str) -> None:
        out.append({"finding": text, "paper": paper, "ours": ours, "verdict": verdict(holds)})

    full = [f for f in t4 if None not in (*f["wer"], *f["ppl"])]
    add("Incremental beats one-shot in WER at every size (Table 4)", "-0.3 % to -3.1 %",
        [f["wer"][1] < f["wer"][0] for f in full],
        ", ".join(f"{100 * f['size']:g} %: {pct_change(f['wer'][1], f['wer'][0]):+.1f} %"
                  for f in full))  # fmt: skip
    add("WER gaps are smaller than the PPL gaps (Table 4)", "WER Δ% << PPL Δ% (Table 1)",
        [abs(pct_change(f["wer"][1], f["wer"][0])) < abs(pct_change(f["ppl"][1], f["ppl"][0]))
         for f in full], "per size: |WER Δ%| vs |PPL Δ%|")  # fmt: skip
    lms = [f for f in t5 if f["lm"] != "no-lm" and f["ppl"] is not None and f["wer"] is not None]
    pairs = [(a, b) for i, a in enumerate(lms) for b in lms[i + 1 :] if a["ppl"] != b["ppl"]]
    agree = [(a["ppl"] < b["ppl"]) == (a["wer"] <= b["wer"]) for a, b in pairs]
    add("WER follows the PPL ordering (Table 5 LMs, pairwise)", "yes, with smaller gaps", agree,
        f"{sum(agree)} of {len(agree)} pairs agree")  # fmt: skip
    for s in d.t5_sizes:
        rows = {f["row"].split(" ", 2)[-1]: f for f in t5 if f["row"].startswith(f"{100 * s:g} %")}
        meth = {m: rows[m]["wer"] for m in ("unstructured", "structured", "factorized")
                if m in rows and rows[m]["wer"] is not None}  # fmt: skip
        if len(meth) == 3:
            others = min(w for m, w in meth.items() if m != "unstructured")
            add(f"Unstructured is the best method at {100 * s:g} % (Table 5)", "3.48 vs 4.21 / 3.54",
                [meth["unstructured"] < others],
                ", ".join(f"{m} {w:.2f}" for m, w in meth.items()))  # fmt: skip
    nolm = next((f for f in t5 if f["lm"] == "no-lm"), None)
    if nolm and nolm["wer"] is not None and lms:
        add("Every NNLM beats no NNLM (Table 5)", "3.47-4.21 vs 3.77 (dictation)",
            [f["wer"] < nolm["wer"] for f in lms], f"no NNLM {nolm['wer']:.2f}")  # fmt: skip
    for f in t6:
        rare = [x for x in f["delta_pct"][2:] if x is not None]
        add(f"Pruned keeps its accuracy on rare words vs scratch at {100 * f['size']:g} % "
            "(Table 6, 75 / 100 % quartiles)", "-2.6 / -1.2 % (dict.)",
            [x <= 0 for x in rare], ", ".join(_d(x) for x in f["delta_pct"]))  # fmt: skip
    return out


def plot_wer_vs_ppl(d: BenchData, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for lm in d.cells:
        ppl, wer = d.ppl(lm), d.wer(lm)
        if ppl is None or wer is None:
            continue
        kind = lm.split("-")[0]
        ax.scatter([ppl], [wer], label=kind, color=COLORS.get(kind, "C9"))
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys())
    if "no-lm" in d.cells:
        ax.axhline(d.wer("no-lm"), color="grey", ls="--", label="no NNLM")
    ax.set(xlabel="valid perplexity (per token)", ylabel="test WER (%)", xscale="log",
           title="WER vs perplexity of the fused LM")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def difficulty(d: BenchData) -> tuple[list[str], dict[str, Any] | None]:
    """The dense NNLM's WER change by the no-LM CER of each test utterance (fusion diagnosis)."""
    if not d.refs or "no-lm" not in d.cells or "baseline" not in d.cells:
        return ["(needs the no-LM and baseline decode cells)", ""], None
    texts = {name: d.cells[name]["texts"] for name in ("no-lm", "baseline")}
    record = wer_by_difficulty(d.refs, texts["no-lm"], texts)
    labels = {"no-lm": "no LM", "baseline": "dense NNLM"}
    return [DIFFICULTY_NOTE, "", *difficulty_table(record, labels), ""], record


def build_asr_report(
    folder: str | Path, *, command: str = "", machine: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """tables.md, results.json and wer_vs_ppl.png of a bench folder (from its JSON alone)."""
    folder = Path(folder)
    d = BenchData(folder)
    t4, f4 = table4(d)
    t5, f5 = table5(d)
    t6, f6 = table6(d)
    sp, fs = speed_table(d)
    hard, hard_record = difficulty(d)
    found = findings(d, f4, f5, f6)
    inv = (d.meta.get("invocations") or [{}])[-1]
    lines = bench_header("prunekit bench asr: seed 004 Tables 4-6", command or inv.get(
        "command", ""), machine or inv.get("machine", {}),
        f"Decode cells: {len(d.cells)} of {len(d.meta['decode_cells'])}; acoustic model and "
        f"source LM from `{d.meta['asr']}`; LMs from the grid `{d.meta['grid']}`.")  # fmt: skip
    intro, legend = __doc__.split("\n\n", 2)[1:]
    lines += ["```", intro.rstrip(), "```", "", legend.strip(), "",
              "## Table 4: one-shot vs incremental (test WER %, all voices)", "", t4,
              "## Table 5: pruning methods vs from scratch (test WER %)", "",
              "The paper's pruned rows are at 10M = 50 % of its 20M baseline; its numbers stand "
              "beside our 50 % rows only.", "", t5,
              "## Table 6: WER by word-frequency quartile, pruned vs from scratch", "", t6,
              "## Decoding speed (1 thread)", "", sp,
              "## The dense NNLM's gain by acoustic difficulty (test WER %)", "", *hard,
              "## Findings", "",
              _table(["paper's finding", "paper", "ours", "verdict"],
                     [[f["finding"], f["paper"], f["ours"], f"**{f['verdict']}**"]
                      for f in found]),
              "![WER vs perplexity](wer_vs_ppl.png)", ""]  # fmt: skip
    paths = {"tables": folder / "tables.md", "results": folder / "results.json",
             "plot": folder / "wer_vs_ppl.png"}  # fmt: skip
    plot_wer_vs_ppl(d, paths["plot"])
    write_text(paths["tables"], "\n".join(lines))
    write_json(paths["results"], {"table4": f4, "table5": f5, "table6": f6, "speed": fs,
                                  "difficulty": hard_record, "findings": found})  # fmt: skip
    return paths
