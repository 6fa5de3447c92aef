"""ClassifyTask with the Trainer, and LSQ (dense -> IHT -> frozen support) through the Trainer."""

import pytest
import torch

from prunekit.config import TrainConfig
from prunekit.data.toy_kws import pattern_clips
from prunekit.errors import PrunekitError
from prunekit.eval.accuracy import accuracy
from prunekit.models.kws import KWSClassifier, KWSConfig
from prunekit.models.rnn_lm import RNNLM, RNNLMConfig
from prunekit.train.classify import ClassifyTask
from prunekit.train.distributed import World
from prunekit.train.lsq import lsq_pruners
from prunekit.train.trainer import Trainer


def _data(n=360, frames=30, seed=0):
    return pattern_clips(n, frames=frames, seed=seed)


def _cfg(steps, **kw):
    base = dict(steps=steps, lr=0.01, weight_decay=0.0, warmup_steps=0, grad_clip=0.0,
                eval_every=steps, log_every=1, betas=(0.9, 0.999), threads=1)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _model(**kw):
    torch.manual_seed(0)
    return KWSClassifier(KWSConfig(n_in=32, n_classes=12, d_hidden=24, **kw))


def test_order_is_a_function_of_seed_and_epoch_and_covers_every_clip():
    x, y = _data(50)
    task = ClassifyTask(x, y, x, y, batch_size=16)
    assert len(task) == 4
    task.order(3, seed=1, shuffle=True)
    first = torch.cat([task.batch(i, World())[1] for i in range(4)])
    task.order(0, seed=1, shuffle=True)
    task.order(3, seed=1, shuffle=True)
    again = torch.cat([task.batch(i, World())[1] for i in range(4)])
    assert torch.equal(first, again) and sorted(first.tolist()) == sorted(y.tolist())
    half = task.batch(0, World(rank=1, size=2))[0]
    assert half.shape[0] == 8


def test_trainer_learns_the_temporal_pattern(tmp_path):
    x, y = _data(600)
    xv, yv = _data(240, seed=1)
    model = _model(cell="fastgrnn", w_rank=8, u_rank=8, gate_nl="quantSigm", update_nl="quantTanh")
    task = ClassifyTask(x, y, xv, yv, batch_size=50)
    history = Trainer(model, task, _cfg(96, eval_every=48), tmp_path, progress=False).fit()
    assert history.valid[-1][1] < 0.5 * history.valid[0][1] + 0.5  # dev loss falls
    assert accuracy(model, xv, yv) > 0.8  # chance is 1/12


def test_lsq_reaches_the_kept_fractions_and_resumes_exactly(tmp_path):
    x, y = _data(200)
    task = lambda: ClassifyTask(x, y, x[:40], y[:40], batch_size=40)  # noqa: E731 - 5 steps/epoch
    steps = 45  # dense [0, 15), projections at 15, 20, 25, frozen support from 30

    def run(folder, stop=None, resume=False):
        model = _model(cell="fastgrnn", w_rank=6, u_rank=8)
        pruners = lsq_pruners(model, s_w=0.3, s_u=0.5, total_steps=steps, every=5)
        trainer = Trainer(
            model, task(), _cfg(steps, eval_every=20), folder, callbacks=pruners, progress=False
        )
        if resume:
            trainer.resume(folder / "checkpoints" / "last")
        trainer.fit(stop)
        return model, trainer, pruners

    model, straight, pruners = run(tmp_path / "a")
    kept = {r["name"]: r["kept"] / r["dense"] for p in pruners for r in p.report()}
    assert kept == pytest.approx({"rnn.cell.w.0.weight": 0.3, "rnn.cell.w.1.weight": 0.3,
                                  "rnn.cell.u.0.weight": 0.5, "rnn.cell.u.1.weight": 0.5}, abs=0.01)  # fmt: skip
    w = model.rnn.cell.w[1].weight
    assert int(torch.count_nonzero(w)) == round(0.3 * w.numel())
    assert (
        model.head.weight.count_nonzero() == model.head.weight.numel()
    )  # the classifier stays dense

    _, _, paused = run(tmp_path / "b", stop=25)  # step index 24 reopened the masks
    assert all(bool(m.all()) for p in paused for m in p.masks().values())
    _, resumed, _ = run(tmp_path / "b", resume=True)
    got = [v for _, v in resumed.history.train]
    assert got == pytest.approx([v for _, v in straight.history.train], abs=1e-6)


def test_lsq_needs_a_fast_cell():
    with pytest.raises(PrunekitError) as err:
        lsq_pruners(RNNLM(RNNLMConfig(vocab_size=5, d_embed=4, d_hidden=4)), 0.3, 0.3, 30)
    assert str(err.value) == (
        "RNNLM has no FastRNN / FastGRNN cell: LSQ training needs a model with one "
        "(e.g. arch fastgrnn or a kws model with cell fastgrnn)"
    )


def test_task_rejects_mismatched_labels():
    x, y = _data(10)
    with pytest.raises(PrunekitError) as err:
        ClassifyTask(x, y[:5], x, y, batch_size=4)
    assert str(err.value) == (
        "the training set has 10 examples and labels of shape (5,): pass one label per example, "
        "as a non-empty (N,) tensor"
    )
