import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from prunekit.errors import PrunekitError
from prunekit.eval.mapsswe import mapsswe, mapsswe_from_ops, sctk_normal_cdf, segments
from prunekit.eval.wer import align_all

SC_STATS = shutil.which("sc_stats") or "/usr/lib/sctk/bin/sc_stats"
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "in",
    "mat",
    "park",
    "red",
    "big",
    "old",
    "man",
    "car",
    "house",
]


def _sgml(title: str, ops_list, ids) -> str:
    """sclite's SGML alignment file (what `sclite -o sgml` writes) for our alignments."""
    out = [f'<SYSTEM title="{title}" ref_fname="ref" hyp_fname="{title}" creation_date="x" '
           'format="2.4" frag_corr="FALSE" opt_del="FALSE" weight_ali="FALSE" weight_filename="">',
           '<SPEAKER id="spk">']  # fmt: skip
    for n, (uid, ops) in enumerate(zip(ids, ops_list, strict=True)):
        words = [f'{op},"{r or ""}","{h or ""}"'.replace(',""', ",") for op, r, h in ops]
        out += [f'<PATH id="({uid})" word_cnt="{len(ops)}" sequence="{n}">', ":".join(words),
                "</PATH>"]  # fmt: skip
    return "\n".join([*out, "</SPEAKER>", "</SYSTEM>", ""])


def _corrupt(words: list[str], rng: random.Random, rate: float) -> list[str]:
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            continue  # deletion
        out.append(rng.choice(WORDS) if r < 2 * rate / 3 else w)  # substitution (maybe same)
        if rng.random() < rate / 3:
            out.append(rng.choice(WORDS))  # insertion
    return out


def _case(seed: int, n: int = 40):
    rng = random.Random(seed)
    refs = [[rng.choice(WORDS) for _ in range(rng.randint(1, 14))] for _ in range(n)]
    h1 = [_corrupt(r, rng, 0.15) for r in refs]
    h2 = [_corrupt(r, rng, 0.15 + 0.1 * (seed % 3)) for r in refs]
    return [" ".join(r) for r in refs], [" ".join(h) for h in h1], [" ".join(h) for h in h2]


def _sctk(tmp_path: Path, refs, h1, h2):
    ids = [f"spk_{i}" for i in range(len(refs))]
    text = _sgml("sys1", align_all(refs, h1), ids) + _sgml("sys2", align_all(refs, h2), ids)
    for flag, name in (("-v", "detail"), ("-u", "unified")):  # -u empties the detail report
        subprocess.run([SC_STATS, "-p", "-t", "mapsswe", flag, "-O", str(tmp_path), "-n", name],
                       input=text, text=True, capture_output=True, check=True)  # fmt: skip
    report = (tmp_path / "detail.stats.mapsswe").read_text()
    line = re.search(
        r"# segs: (\d+)\).*% Error: +([\d.]+) +([\d.]+)\) \(mean: +(\S+)\) \(std dev: +(\S+)\) "
        r"\(Z Stat: +(\S+)\)",
        report,
    )
    unified = (tmp_path / "unified.stats.unified").read_text()
    p = re.search(r"\|\s+MP\s+\|\|\s+sys1\s+\|\s+\|\s+(\S+)\s+(<?[\d.]+)", unified)
    return line.groups(), p.groups()


@pytest.mark.skipif(not Path(SC_STATS).exists(), reason="sctk is not installed")
@pytest.mark.parametrize("seed", range(8))
def test_matches_sctk(tmp_path, seed):
    refs, h1, h2 = _case(seed)
    (segs, pct1, pct2, mean, std, z), (winner, p) = _sctk(tmp_path, refs, h1, h2)
    r = mapsswe(refs, h1, h2)
    assert r.segments == int(segs)
    assert f"{100 * r.errors1 / r.ref_words:5.2f}".strip() == pct1
    assert f"{100 * r.errors2 / r.ref_words:5.2f}".strip() == pct2
    assert f"{r.mean:5.3f}".strip() == mean
    assert f"{r.std_dev:5.3f}".strip() == std
    assert f"{r.z:5.3f}".strip() == z
    if p == "<0.001":
        assert r.p_value_sctk < 0.001
    else:
        assert f"{r.p_value_sctk:5.3f}" == p
    assert winner == ("~" if r.p_value_sctk > 0.05 else "sys1" if r.mean < 0 else "sys2")
    assert abs(r.p_value - r.p_value_sctk) < 0.02  # the table rounds z down by < 0.01


def test_segments_hand_worked():
    # errors at word 2 in system 1, words 2 and 6 in system 2; 2 correct words close a segment
    s1 = ["C", "C", "S", "C", "C", "C", "C", "C"]
    s2 = ["C", "C", "D", "C", "C", "C", "S", "C"]
    assert segments(s1, s2) == [(5, 1, 1), (4, 0, 1)]  # from min_good - 1 words before
    # an insertion opens a segment; the sentence end closes it
    assert segments(["C", "C", "C", "I"], ["C", "C", "C"]) == [(2, 1, 0)]


def test_identical_systems_are_not_different():
    refs, h1, _ = _case(1)
    r = mapsswe(refs, h1, h1)
    assert r.z == 0.0 and r.p_value == 1.0 and r.mean == 0.0
    assert r.segments > 0 and r.errors1 == r.errors2


def test_clearly_better_system_is_significant():
    refs = [" ".join(["the cat sat on the mat"] * 2)] * 60
    worse = [r.replace("cat", "car", 1) for r in refs]
    r = mapsswe(refs, refs, worse)
    assert r.segments == 60 and r.mean == -1.0
    assert r.z == 0.0  # no variance: sctk reports Z = 0 in that case, so do we
    one = [w if i % 10 == 0 else r for i, (r, w) in enumerate(zip(refs, worse, strict=True))]
    m = mapsswe(refs, one, worse)
    assert m.z < -5 and m.significant(0.005)


def test_sctk_table_lookup():
    assert sctk_normal_cdf(0.0) == 0.5
    assert (
        sctk_normal_cdf(1.969) == sctk_normal_cdf(1.96) == round(0.5 * math.erfc(-1.96 / 2**0.5), 7)
    )
    assert sctk_normal_cdf(-2.5) == sctk_normal_cdf(2.5)
    assert sctk_normal_cdf(9.0) == sctk_normal_cdf(5.14)


def test_mismatched_inputs():
    with pytest.raises(PrunekitError, match="system 1 has 1 utterances and system 2 2"):
        mapsswe_from_ops([["C"]], [["C"], ["C"]])
    with pytest.raises(PrunekitError, match="cover 2 and 1 reference words"):
        mapsswe_from_ops([["C", "C"]], [["C"]])
    with pytest.raises(PrunekitError, match="min_good=0 must be >= 1"):
        mapsswe(["a"], ["a"], ["a"], min_good=0)
