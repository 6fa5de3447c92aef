"""`prunekit report A B --compare`: which of seed 004's findings hold on both grids (e.g. the
default corpus and web-bible), as one Markdown table of verdicts with their numbers.

Each grid is read exactly as `prunekit report` reads it (cells JSON and grid.json; nothing is
written into the grid folders); a finding holds on both when both verdicts are 'reproduced'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.errors import PrunekitError
from prunekit.report.paper import DASH, _table, load_grid, render


def grid_name(folder: Path, grid: dict[str, Any] | None) -> str:
    """The grid's corpus (a built-in name or a folder's name), else the folder's name."""
    corpus = ((grid or {}).get("recipe") or {}).get("data", {}).get("corpus")
    return Path(str(corpus)).name if corpus else folder.name


def grid_findings(
    folder: Path, metric: str, flat: tuple[float, float]
) -> tuple[str, int, list[dict[str, Any]]]:
    """(corpus name, number of cells, findings with verdicts) of one grid folder."""
    cells, grid = load_grid(folder)
    _, data = render(cells, grid, metric, "", {}, flat)
    return grid_name(folder, grid), len(cells), data["findings"]


def both(verdicts: list[str]) -> str:
    """The 'on both' column: holds on both, reversed on both, the same, or differs."""
    every = "both" if len(verdicts) == 2 else "all"
    if all(v == "reproduced" for v in verdicts):
        return f"**holds on {every}**"
    if all(v == "reversed" for v in verdicts):
        return f"**reversed on {every}**"
    if any(v == "not measured yet" for v in verdicts):
        return f"not measured on {every} yet"
    if len(set(verdicts)) == 1:
        return f"same on {every}: {verdicts[0]}"
    return "**differs**"


def compare_grids(
    folders: list[str | Path], metric: str = "valid_ppl", flat: tuple[float, float] = (3.0, 1.0)
) -> str:
    """Markdown: finding x grid with verdicts and numbers, then the budget notes side by side.

    Raises:
        PrunekitError: fewer than two folders, or a folder that is not a grid.
    """
    if len(folders) < 2:
        raise PrunekitError(
            "--compare needs two grid folders or more: prunekit report A B --compare"
        )
    grids = [(Path(f), *grid_findings(Path(f), metric, flat)) for f in folders]
    names = [name for _, name, _, _ in grids]
    if len(set(names)) < len(names):  # same corpus twice: tell them apart by folder
        names = [str(folder) for folder, *_ in grids]
    by_id = [{f["id"]: f for f in findings} for *_, findings in grids]
    ids = list(dict.fromkeys(fid for table in by_id for fid in table))
    rows, notes = [], []
    for fid in ids:
        got = [table.get(fid) for table in by_id]
        first = next(f for f in got if f)
        cells = [f"**{f['verdict']}** ({f['ours']})" if f else DASH for f in got]
        verdicts = [f["verdict"] if f else "not measured yet" for f in got]
        rows.append([first["finding"], first["paper"], *cells, both(verdicts)])
        if any(f and f.get("budget") for f in got):
            notes.append([first["finding"], *((f or {}).get("budget") or DASH for f in got)])
    sources = [
        f"- {name}: `{folder}` ({n} cells)"
        for (folder, _, n, _), name in zip(grids, names, strict=True)
    ]
    out = [
        "# Seed 004's findings on several corpora\n",
        f"Metric `{metric}`; verdicts as `prunekit report` gives them for each grid:\n",
        *sources,
        "",
        _table(
            ["Paper's finding", "paper", *names, "on both" if len(names) == 2 else "on all"], rows
        ),
    ]
    if notes:
        out += ["How the verdicts depend on the budget:\n", _table(["Finding", *names], notes)]
    return "\n".join(out)
