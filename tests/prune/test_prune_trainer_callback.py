"""The Pruner as a `prunekit.train.Trainer` callback: after_step, checkpoints, exact resume."""

import pytest
import torch
from prune_standins import TinyTransformerLM, lm_batches, lm_loss

from prunekit.prune import Cubic, PruneConfig, Pruner
from prunekit.prune.schedules import round_half_up
from prunekit.train.task import LMTask

CFG = PruneConfig(criterion="taylor", schedule=Cubic(s_f=0.6, t0=1, dt=2, n=3))


class FakeTrainer:
    """The callback protocol of prunekit.train.Trainer: after_step(trainer, steps_done)."""

    def __init__(self, model, callbacks):
        self.model, self.callbacks, self.step = model, callbacks, 0
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def train_step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        lm_loss(self.model, x, y).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        for cb in self.callbacks:
            cb.after_step(self, self.step)


def test_after_step_follows_the_schedule_and_zeroes_optimizer_state():
    torch.manual_seed(0)
    model = TinyTransformerLM()
    pruner = Pruner(model, CFG).attach()
    trainer = FakeTrainer(model, [pruner])
    for x, y in lm_batches(13, 9):
        trainer.train_step(x, y)
        for name, m in pruner.masks().items():
            want = round_half_up(CFG.schedule(trainer.step - 1) * m.numel())
            assert int((~m).sum()) == want, name
    assert pruner.next_step == 9
    for t in pruner.targets:
        dead = ~pruner.masks()[t.name]
        assert bool((trainer.optimizer.state[t.param]["exp_avg"][dead] == 0).all())


def test_after_step_is_a_no_op_with_optimizer_hooks():
    torch.manual_seed(0)
    model = TinyTransformerLM()
    pruner = Pruner(model, CFG).attach()
    trainer = FakeTrainer(model, [pruner])
    pruner.add_optimizer(trainer.optimizer)
    for x, y in lm_batches(13, 4):
        trainer.train_step(x, y)
    assert pruner.next_step == 4  # counted once, by the hooks


def test_real_trainer_checkpoint_and_resume(tmp_path):
    trainer_mod = pytest.importorskip("prunekit.train.trainer")
    config = pytest.importorskip("prunekit.config")
    batching = pytest.importorskip("prunekit.data.batching")
    models = pytest.importorskip("prunekit.models")
    tokens = torch.randint(0, 17, (400,), generator=torch.Generator().manual_seed(0))
    train_cfg = config.TrainConfig(
        steps=8, batch_size=2, bptt=8, warmup_steps=0, eval_every=4, eval_batch_size=2
    )

    def run(out, steps, resume=None):
        torch.manual_seed(0)
        mcfg = models.TransformerLMConfig(vocab_size=17, d_model=8, n_layer=1, n_head=2, d_ff=12)
        model = models.TransformerLM(mcfg)
        pruner = Pruner(model, CFG).attach()
        trainer = trainer_mod.Trainer(
            model,
            LMTask(batching.LMBatches(tokens[:300], 2, 8), tokens[300:], eval_batch_size=2, bptt=8),
            train_cfg,
            out,
            callbacks=[pruner],
            progress=False,
        )
        if resume is not None:
            trainer.resume(resume)
        trainer.fit(steps)
        return model.state_dict(), pruner

    straight, p1 = run(tmp_path / "a", 8)
    run(tmp_path / "b", 4)
    resumed, p2 = run(tmp_path / "b", 8, resume=tmp_path / "b" / "checkpoints" / "last")
    assert p2.next_step == p1.next_step == 8
    masks = [k for k in straight if k.endswith(".mask")]
    assert masks and any(not bool(straight[k].all()) for k in masks)
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
