"""Trace-norm and l2 regularizers, the regularized Task, the ν log and the recipe section."""

import pytest
import torch

from prunekit.config import TrainConfig, parse_recipe
from prunekit.errors import PrunekitError
from prunekit.lowrank import (
    L2,
    LowRankSection,
    NuLogger,
    RegularizedTask,
    TraceNorm,
    factorize,
    factors,
    full_rank_plan,
    nu,
    select_matrices,
)
from prunekit.train.distributed import World
from prunekit.train.trainer import Trainer
from rnn_standins import SeqTask, Stack


def _factored(cell="gru"):
    torch.manual_seed(0)
    model = Stack(cell)
    mats = select_matrices(model)
    factorize(model, full_rank_plan(mats))
    return model, mats


def test_trace_norm_term_by_hand_and_equal_to_the_nuclear_norm_when_balanced():
    model, mats = _factored()
    reg = TraceNorm(model, lambda_rec=0.3, lambda_nonrec=0.1)
    by_hand = 0.0
    nuclear = 0.0
    for m in mats:
        U, V = factors(m.module, m.attr)
        lam = 0.3 if m.recurrent else 0.1
        by_hand += lam / 2 * float(U.detach().pow(2).sum() + V.detach().pow(2).sum())
        nuclear += lam * float(torch.linalg.svdvals(m.weight.detach().double()).sum())
    assert reg().item() == pytest.approx(by_hand, rel=1e-6)
    # balanced factors attain min (|U|^2 + |V|^2) / 2 = |W|_* (Srebro et al.)
    assert reg().item() == pytest.approx(nuclear, rel=1e-5)
    assert TraceNorm(model, 0.0, 0.0)().item() == 0.0


def test_l2_term_by_hand_and_recurrent_split():
    torch.manual_seed(0)
    model = Stack("lstm")
    mats = select_matrices(model)
    rec = sum(float(m.weight.detach().pow(2).sum()) for m in mats if m.recurrent)
    other = sum(float(m.weight.detach().pow(2).sum()) for m in mats if not m.recurrent)
    assert L2(mats, 2.0, 0.0)().item() == pytest.approx(rec, rel=1e-6)
    assert L2(mats, 0.0, 2.0)().item() == pytest.approx(other, rel=1e-6)


def test_regularized_task_adds_the_term_and_its_gradient():
    model, _ = _factored()
    task = SeqTask()
    reg = TraceNorm(model, 0.5, 0.5)
    wrapped = RegularizedTask(task, reg)
    batch = task.batch(0, World())
    assert float(wrapped.loss(model, batch)) == pytest.approx(
        float(task.loss(model, batch)) + reg().item(), rel=1e-6
    )
    U, _ = factors(model.head, "weight")
    wrapped.loss(model, batch).backward()
    g_total = U.grad.clone()
    model.zero_grad()
    task.loss(model, batch).backward()
    assert torch.allclose(g_total - U.grad, 0.5 * U.detach(), atol=1e-6)  # d/dU of lam/2 |U|^2
    assert len(wrapped) == len(task) and wrapped.unit == "frame"
    assert wrapped.x is task.x  # other attributes come from the task


def test_trace_norm_training_lowers_nu_and_the_log_is_resumable(tmp_path):
    def run(out, steps, resume=False, lam=0.05):
        model, mats = _factored()
        reg = TraceNorm(model, lam, lam)
        log = NuLogger(mats, every=5, regularizer=reg)
        cfg = TrainConfig(steps=30, lr=0.02, warmup_steps=0, eval_every=10, weight_decay=0.0)
        trainer = Trainer(model, RegularizedTask(SeqTask(), reg), cfg, out, callbacks=[log],
                          progress=False)  # fmt: skip
        if resume:
            trainer.resume(out / "checkpoints" / "last")
        else:
            log.record(0)
        trainer.fit(steps)
        return log.rows, model

    rows, model = run(tmp_path / "a", 30)
    assert [r["step"] for r in rows] == [0, 5, 10, 15, 20, 25, 30]
    name = "rnn.weight_hh_l0"
    assert rows[-1]["nu"][name] < rows[0]["nu"][name]  # the regularizer lowers the rank
    assert rows[-1]["nu"][name] == pytest.approx(nu(model.rnn.weight_hh_l0.detach()))
    assert rows[-1]["regularizer"] < rows[0]["regularizer"]
    plain, _ = run(tmp_path / "z", 30, lam=0.0)
    assert plain[-1]["nu"][name] > rows[-1]["nu"][name]
    run(tmp_path / "b", 20)
    resumed, _ = run(tmp_path / "b", 30, resume=True)
    assert resumed == rows


def test_lowrank_recipe_section_and_grid():
    cfg = parse_recipe(
        {"lowrank": [{"name": "tn", "lambda_rec": [0, 1e-4], "lambda_nonrec": 1e-5,
                      "thresholds": [0.8, 0.99], "scope": {"exclude": ["lm_head"]}}]}
    )  # fmt: skip
    grid = cfg.lowrank[0].grid()
    assert [(g.name, g.lambda_rec, g.lambda_nonrec) for g in grid] == [
        ("tn-rec0-nonrec1e-05", 0, 1e-5),
        ("tn-rec0.0001-nonrec1e-05", 1e-4, 1e-5),
    ]
    assert grid[0].scope_config().exclude == ("lm_head",)
    single = LowRankSection(name="one")
    assert single.grid() == [single]
    with pytest.raises(PrunekitError) as exc:
        parse_recipe({"lowrank": [{"name": "x", "thresholds": [1.5]}]})
    assert str(exc.value).startswith("recipe key 'lowrank.0.thresholds': Value error, every ")
    with pytest.raises(PrunekitError, match="recipe key 'lowrank.0.lambda_rec'"):
        parse_recipe({"lowrank": [{"name": "x", "lambda_rec": -1}]})
    with pytest.raises(PrunekitError, match="recipe key 'lowrank.0.regularizer'"):
        parse_recipe({"lowrank": [{"name": "x", "regularizer": "l1"}]})


def test_pareto_front_table_and_plots(tmp_path):
    from prunekit.lowrank.report import lowrank_markdown, pareto_front, plot_nu, plot_pareto

    assert pareto_front([(10, 1.0), (20, 0.5), (15, 1.2), (20, 0.5), (5, 2.0)]) == [
        True, True, False, True, True
    ]  # fmt: skip
    rows = [
        {"variant": f"{reg}@{t}", "regularizer": reg, "lambda_rec": 1e-4, "lambda_nonrec": 0.0,
         "threshold": t, "params": p, "dense_params": 100, "valid_loss": e}
        for reg, t, p, e in [("tracenorm", 0.8, 30, 2.0), ("tracenorm", 0.9, 50, 1.5),
                             ("l2", 0.8, 40, 2.1), ("l2", 0.9, 60, 1.4)]
    ]  # fmt: skip
    md = lowrank_markdown(rows)
    assert md.splitlines()[2].startswith("| tracenorm@0.8 | tracenorm | 0.0001 | 0 | 0.8 | 30 |")
    assert "| l2@0.8 | l2 | 0.0001 | 0 | 0.8 | 40 | 40.0 % | 2.1 | yes |  |" in md
    plot_pareto(rows, tmp_path / "p.png", dense=(100, 1.3))
    plot_nu([{"step": 0, "nu": {"a": 0.9}}, {"step": 5, "nu": {"a": 0.5}}], tmp_path / "n.png")
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "n.png").is_file()
