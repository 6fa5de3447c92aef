"""The cells of `prunekit bench asr`: which LMs of a paper grid feed seed 004's Tables 4-6, and the
decoding cell of each.

LM cells are ordinary cells of the paper grid (`prunekit.bench.paper_cells`; their ids name the
computation): the dense baseline, from-scratch models, one-shot and incremental pruning. A decode
cell `decode-<LM cell id>` decodes the test set with that LM (plus the no-LM cell `decode-no-lm`):

    Table 4   one-shot vs incremental (t1 criterion, unstructured) at every size, and the baseline
    Table 5   baseline (100 % from scratch), from scratch at each Table-5 size, unstructured /
              structured / factorized (t3 criterion, incremental) at that size, no NNLM
    Table 6   WER by word-frequency quartile: unstructured vs from scratch at each Table-5 size

Seed 004's Table 5 and 6 compare models of 10M parameters, half of its 20M baseline (50 %); the
issue that asked for these tables says 10 %. Both sizes are planned by default (`t5_sizes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prunekit.bench.paper_cells import prune_id
from prunekit.bench.paper_spec import PaperConfig, size_label

NO_LM = "no-lm"
T5_SIZES = (0.5, 0.1)


@dataclass(frozen=True)
class DecodeCell:
    """Decoding the test set with the LM of grid cell `lm` (None: no LM)."""

    lm: str | None
    tables: tuple[str, ...] = ()
    depends: tuple[str, ...] = field(default_factory=tuple)  # decode cells tuned first

    @property
    def id(self) -> str:
        return f"decode-{self.lm or NO_LM}"


def scratch_id(size: float, seed: int = 0) -> str:
    return f"scratch-{size_label(size)}-seed{seed}"


def lm_cells(paper: PaperConfig, t5_sizes: tuple[float, ...] = T5_SIZES) -> dict[str, list[str]]:
    """Grid cell ids feeding each table: {"table4": [...], "table5": [...], "table6": [...]}."""
    seed, c1, c3 = paper.seeds[0], paper.t1_criterion, paper.t3_criterion
    t4 = ["baseline"]
    for size in paper.sizes:
        t4 += [prune_id(s, c1, "unstructured", size, seed) for s in ("one-shot", "incremental")]
    t5, t6 = ["baseline"], []
    for size in t5_sizes:
        t5.append(scratch_id(size, seed))
        t5 += [prune_id("incremental", c3, m, size, seed) for m in paper.methods]
        t6 += [scratch_id(size, seed), prune_id("incremental", c3, "unstructured", size, seed)]
    return {"table4": t4, "table5": t5, "table6": t6}


def decode_cells(paper: PaperConfig, t5_sizes: tuple[float, ...] = T5_SIZES) -> list[DecodeCell]:
    """Every decode cell, baseline first (the others start their tuning from its weights)."""
    tables: dict[str, list[str]] = {}
    for table, ids in lm_cells(paper, t5_sizes).items():
        for cid in ids:
            tables.setdefault(cid, []).append(table)
    cells = [DecodeCell(None, ("table5",))]
    for cid, where in tables.items():
        depends = () if cid == "baseline" else ("decode-baseline",)
        cells.append(DecodeCell(cid, tuple(dict.fromkeys(where)), depends))
    return cells


def grid_glob(paper: PaperConfig, t5_sizes: tuple[float, ...] = T5_SIZES) -> str:
    """The `--cells` pattern of the paper grid that runs exactly the LMs the tables need."""
    ids = {cid for ids in lm_cells(paper, t5_sizes).values() for cid in ids}
    return ",".join(sorted(ids))
