"""Our LSQ+Q row's training step is EdgeML's: from the same start, on the same batches, the
bench's `train_row` (prunekit Trainer, ClassifyTask, LSQ pruners, the row's TrainConfig) and
EdgeML's FastTrainer step (its BaseRNN, loss and plain Adam over cell + FC) give the same weights
through the dense stage, so a gap between the two rows is not a difference of the dense update
(weight decay, clipping, loss, learning rate)."""

import torch
import torch.nn.functional as F

from prunekit.bench import kws_rows
from prunekit.bench.kws_data import toy_data
from prunekit.bench.kws_spec import KWSBenchSpec
from prunekit.models.edgeml_ref import edgeml_cell, import_edgeml, load_from_edgeml
from prunekit.models.kws import KWSClassifier
from prunekit.train.classify import ClassifyTask
from prunekit.train.distributed import World

TINY = {"epochs": 15, "batch_size": 40, "hidden": 16, "w_rank": 4, "u_rank": 6, "s_w": 0.5,
        "s_u": 0.5, "trimlevel": 3}  # fmt: skip
STEPS = 6  # two epochs of 120 clips, all in the dense third (IHT starts at step 15 of 45)


def _edgeml_steps(spec: KWSBenchSpec, data, steps: int) -> KWSClassifier:
    """EdgeML's FastTrainer update, `steps` times, from train_row's start on its batches."""
    torch.manual_seed(spec.seed)
    start = KWSClassifier(kws_rows.model_config("fastgrnn_lsq_q", spec, data))
    cell = edgeml_cell(start.rnn.cell)
    trainer = import_edgeml().FastTrainer(
        cell, len(data.labels), sW=spec.s_w, sU=spec.s_u, learningRate=spec.lr
    )
    with torch.no_grad():
        trainer.FC.copy_(start.head.weight.t())
        trainer.FCbias.copy_(start.head.bias)
    trainer.optimizer = torch.optim.Adam([*cell.parameters(), trainer.FC, trainer.FCbias], spec.lr)
    task = ClassifyTask(
        data.train_x, data.train_y, data.dev_x, data.dev_y, batch_size=spec.batch_size
    )
    for step in range(steps):
        epoch, index = divmod(step, len(task))
        if index == 0:
            task.order(epoch, spec.seed, shuffle=True)
        x, y = task.batch(index, World())
        trainer.optimizer.zero_grad()
        logits, _ = trainer.computeLogits(x)
        trainer.loss(logits, F.one_hot(y, len(data.labels)).float()).backward()
        trainer.optimizer.step()
    load_from_edgeml(start.rnn.cell, cell)
    with torch.no_grad():
        start.head.weight.copy_(trainer.FC.t())
        start.head.bias.copy_(trainer.FCbias)
    return start


def test_dense_stage_steps_match_edgemls_fast_trainer(monkeypatch, tmp_path):
    class FewSteps(kws_rows.Trainer):
        def fit(self, steps=None):
            return super().fit(STEPS)

    monkeypatch.setattr(kws_rows, "Trainer", FewSteps)
    spec = KWSBenchSpec(**{**TINY, "grad_clip": 0.0})  # EdgeML's FastTrainer does not clip
    data = toy_data(0, n_train=120, n_dev=60, n_test=60, frames=24)
    ours, _ = kws_rows.train_row("fastgrnn_lsq_q", spec, data, tmp_path)
    theirs = _edgeml_steps(spec, data, STEPS)
    torch.manual_seed(spec.seed)
    start = KWSClassifier(ours.config).state_dict()
    for name, value in theirs.state_dict().items():
        assert not torch.allclose(start[name], value)  # both trained ...
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-4, atol=1e-5)  # alike
