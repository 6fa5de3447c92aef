"""The Trainer trains any `Task`, not only language models."""

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config import TrainConfig
from prunekit.train.distributed import World
from prunekit.train.trainer import Trainer


class Regression:
    """y = x @ w_true on 8 fixed batches: a task with a loss that is not cross-entropy."""

    unit = "sample"

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 4, 3, generator=g)  # (batches, B, in)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]])  # (batches, B, 1)

    def __len__(self) -> int:
        return 8

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        return list(range(8))

    def batch(self, index: int, world: World):
        return self.x[index], self.y[index]

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(model(x), y)

    def units(self, batch, world: World) -> int:
        return batch[0].shape[0]

    def validate(self, model: nn.Module, world: World) -> float:
        with torch.no_grad():
            return F.mse_loss(model(self.x), self.y).item()


def _cfg(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, lr=0.2, warmup_steps=0, eval_every=10, weight_decay=0.0)


def test_trainer_fits_a_non_lm_task_and_counts_its_units(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    task = Regression()
    before = task.validate(model, World())
    trainer = Trainer(model, task, _cfg(100), tmp_path, progress=False)
    history = trainer.fit()
    assert task.validate(model, World()) < 0.1 * before
    assert history.tokens_seen == 100 * 4  # 4 samples per batch
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").is_file()


def test_a_non_lm_task_resumes_exactly(tmp_path):
    def run(out, steps, resume=False):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        trainer = Trainer(model, Regression(), _cfg(20), out, progress=False)
        if resume:
            trainer.resume(out / "checkpoints" / "last")
        trainer.fit(steps)
        return model.weight.detach().clone()

    straight = run(tmp_path / "a", 20)
    run(tmp_path / "b", 10)
    resumed = run(tmp_path / "b", 20, resume=True)
    assert torch.equal(straight, resumed)
