"""A recipe's `lowrank:` sections on its LSTM LM: both stages, perplexities, honest sizes."""

import pytest

from prunekit.config import parse_recipe
from prunekit.errors import PrunekitError
from prunekit.pipelines.lm_baseline import build_lm, prepare_data
from prunekit.pipelines.lm_lowrank import check_lowrank, lowrank_lm


def _cfg(tiny_corpus, tiny_recipe, **lowrank):
    raw = tiny_recipe(tiny_corpus, steps=6, eval_every=6)
    raw["model"] = {"arch": "rnn", "cell": "lstm", "d_embed": 16, "d_hidden": 16, "n_layer": 1}
    section = {"name": "tn", "lambda_rec": [0.0, 1e-3], "lambda_nonrec": 1e-3,
               "thresholds": [0.5], "stage2_steps": 3, "nu_every": 3, **lowrank}  # fmt: skip
    return parse_recipe({**raw, "lowrank": [section]})


def test_lowrank_lm_rows_for_every_grid_point(tiny_corpus, tiny_recipe, tmp_path):
    cfg = _cfg(tiny_corpus, tiny_recipe)
    data = prepare_data(cfg)
    rows = lowrank_lm(cfg, cfg.lowrank[0], data, tmp_path, progress=False)
    assert [r["variant"] for r in rows] == [
        "tn-rec0-nonrec0.001@0.5",
        "tn-rec0.001-nonrec0.001@0.5",
    ]
    for r in rows:
        assert r["valid_ppl"] > 1 and r["test_ppl"] > 1
        assert r["effective_params"] == r["params"] < r["dense_params"]
        assert 0 < r["size_fraction"] < 1 and r["section"] == "tn"
        assert r["sparse_flops_per_token"] == r["flops_per_token"] < r["dense_flops_per_token"]
    assert (tmp_path / "tn-rec0-nonrec0.001" / "stage1" / "nu.json").is_file()


def test_check_lowrank_rejects_a_scope_before_training(tiny_corpus, tiny_recipe):
    cfg = _cfg(tiny_corpus, tiny_recipe, scope={"include": ["nothing.*"]})
    data = prepare_data(cfg)
    with pytest.raises(PrunekitError, match="scope.include pattern 'nothing.\\*' matches no"):
        check_lowrank(cfg, build_lm(cfg, data.tokenizer.vocab_size))


def test_prunekit_run_reports_the_lowrank_front(tiny_corpus, tiny_recipe, tmp_path):
    from prunekit.pipelines.lm_run import run_main, write_report

    cfg = _cfg(tiny_corpus, tiny_recipe, lambda_rec=1e-3, thresholds=[0.5, 0.9])
    result = run_main(cfg, tmp_path, progress=False)
    low = [r for r in result["compressed"] if "regularizer" in r]
    assert [r["threshold"] for r in low] == [0.5, 0.9]
    write_report(result, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "## Low rank (seed 000)" in report and "| tn@0.5 | tracenorm |" in report
    assert (tmp_path / "lowrank_pareto.png").is_file()
    assert (tmp_path / "lowrank" / "tn" / "tn" / "stage1" / "nu.png").is_file()


def test_a_stage2_checkpoint_exports_compact(tiny_corpus, tiny_recipe, tmp_path):
    import torch

    from prunekit.cli.export import load_pruned
    from prunekit.cli.main import main
    from prunekit.export import LowRankLinear, load_compact

    cfg = _cfg(tiny_corpus, tiny_recipe, lambda_rec=1e-3, thresholds=[0.5])
    data = prepare_data(cfg)
    lowrank_lm(cfg, cfg.lowrank[0], data, tmp_path, progress=False)
    ckpt = tmp_path / "tn" / "stage2-0.5" / "checkpoints" / "best"
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x"), "--repeats", "2"]) == 0
    model, _ = load_pruned(ckpt)
    fast = load_compact(tmp_path / "x")
    assert any(isinstance(m, LowRankLinear) for m in fast.rnn.modules())
    idx = data.valid[:24].reshape(2, 12)
    with torch.no_grad():
        assert float((fast(idx) - model(idx)).abs().max()) < 1e-4


def test_builtin_seed_000_001_recipe_validates_against_its_model():
    from prunekit.config import load_recipe
    from prunekit.pipelines.lm_narang import check_narang
    from prunekit.recipes import builtin

    cfg = load_recipe(builtin("rnn_lowrank_narang"))
    assert [s.schedule for s in cfg.prune] == ["narang"]
    assert sum(len(s.grid()) for s in cfg.lowrank) == 4
    model = build_lm(cfg, 2000)
    check_lowrank(cfg, model)
    check_narang(cfg, model)


def test_a_lowrank_section_on_another_corpus_is_redone_not_reused(
    tiny_corpus, tiny_recipe, tmp_path, caplog
):
    cfg = _cfg(tiny_corpus, tiny_recipe, lambda_rec=1e-3, thresholds=[0.5])
    first = lowrank_lm(cfg, cfg.lowrank[0], prepare_data(cfg), tmp_path / "s", progress=False)
    other = tmp_path / "other"  # the same layout, half the text
    other.mkdir()
    for split in ("train", "valid", "test"):
        lines = (tiny_corpus / f"{split}.txt").read_text().splitlines()
        (other / f"{split}.txt").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    cfg2 = _cfg(other, tiny_recipe, lambda_rec=1e-3, thresholds=[0.5])
    again = lowrank_lm(cfg2, cfg2.lowrank[0], prepare_data(cfg2), tmp_path / "s", progress=False)
    assert "corpus sha256" in caplog.text and "starting it over" in caplog.text
    assert again[0]["valid_ppl"] != first[0]["valid_ppl"]
    fresh = lowrank_lm(cfg2, cfg2.lowrank[0], prepare_data(cfg2), tmp_path / "f", progress=False)
    assert again[0]["valid_ppl"] == fresh[0]["valid_ppl"]  # as if the folder had been empty
