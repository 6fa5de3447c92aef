"""One trainer for every prunekit model: AdamW, warmup + decay, clipping, validation, safetensors
checkpoints with exact resume, one process or `torchrun` DDP (gloo). What it trains on and which
loss it minimises come from a `Task` (`prunekit.train.task`).

Divergence guard: a NaN or infinite training loss, gradient norm or validation loss stops the run
with a one-line `PrunekitError` naming the step and the learning rate, before the optimizer step,
so the model and the checkpoints keep their last good state."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from prunekit.config import TrainConfig
from prunekit.errors import PrunekitError
from prunekit.models.registry import registered_config
from prunekit.train.checkpoint import CORRUPT_STATE, load_checkpoint, save_checkpoint
from prunekit.train.distributed import World, all_reduce_sum
from prunekit.train.lr import lr_at
from prunekit.train.task import Task

log = logging.getLogger(__name__)


class Callback(Protocol):
    """What the trainer calls; every method is optional (looked up with hasattr).

    `after_step(trainer, step)` runs after each optimizer step; `state_dict()` returning
    {"meta": JSON-able, "tensors": {name: Tensor}} and `load_state_dict(that)` put the callback's
    state into checkpoints (a `prunekit.prune.Pruner` is such a callback).
    """

    def after_step(self, trainer: Trainer, step: int) -> None: ...


@dataclass
class History:
    """Loss curve and validation points, kept in the checkpoint so a resumed run continues it."""

    train: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    valid: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    best_valid_loss: float = math.inf
    tokens_seen: int = 0  # units of the task (tokens for an LM, frames for an acoustic model)
    train_seconds: float = 0.0
    pending: list[float] = field(default_factory=list)  # losses since the last `train` point


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, norms or 1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


class Trainer:
    """Train `model` on `task`'s batches, validate with `task`, checkpoint into `out_dir`.

    Args:
        model: the model to train (its loss comes from `task.loss`).
        task: data and objective, e.g. `LMTask(LMBatches(...), valid_tokens, ...)`.
        cfg: the train section of the recipe.
        out_dir: checkpoints go to out_dir/checkpoints/{last,best}.
        callbacks: see `Callback`.
        label: what the progress bar says this run is (e.g. "baseline", "prune taylor").
        files: file name -> bytes written into every checkpoint (e.g. the tokenizer).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        world: World = World(),
        callbacks: list[Any] | None = None,
        run_state: dict[str, Any] | None = None,
        progress: bool = True,
        label: str = "train",
        files: dict[str, bytes] | None = None,
    ) -> None:
        self.model, self.task = model, task
        self.files = dict(files or {})
        self.cfg, self.world = cfg, world
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks or [])
        self.run_state = dict(run_state or {})
        self.progress = progress and world.is_main
        self.label = label
        self.optimizer = build_optimizer(model, cfg)
        self.history = History()
        self.step = 0  # number of optimizer steps done
        self._ddp = DistributedDataParallel(model) if world.size > 1 else None

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def _batch(self, step: int) -> Any:
        epoch, index = divmod(step, len(self.task))
        if index == 0 or not hasattr(self, "_order") or self._order_epoch != epoch:
            self._order = self.task.order(epoch, self.cfg.seed, self.cfg.shuffle)
            self._order_epoch = epoch
        return self.task.batch(self._order[index], self.world)

    def train_step(self) -> float:
        """Run one optimizer step; return its training loss."""
        batch = self._batch(self.step)
        self._last_units = self.task.units(batch, self.world)
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        loss = self.task.loss(self._ddp or self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        value = loss.item()
        self._check_finite(value, float(norm), lr)
        self.optimizer.step()
        self.step += 1
        for cb in self.callbacks:
            if hasattr(cb, "after_step"):
                cb.after_step(self, self.step)
        return value

    def _check_finite(self, loss: float, grad_norm: float, lr: float) -> None:
        """Stop before the optimizer step if the loss or gradient is NaN / inf (on any rank)."""
        flags = [float(not math.isfinite(loss)), float(not math.isfinite(grad_norm))]
        bad_loss, bad_grad = all_reduce_sum(flags, self.world)
        if bad_loss or bad_grad:
            what = f"training loss is {loss}" if bad_loss else f"gradient norm is {grad_norm}"
            self._diverged(self.step + 1, lr, what)

    def _diverged(self, step: int, lr: float, what: str) -> None:
        last = self.checkpoint_dir / "last"
        kept = f"{last} keeps the last good state" if last.is_dir() else "no checkpoint was written"
        raise PrunekitError(
            f"training diverged at step {step} (learning rate {lr:.3g}): the {what}; {kept}: "
            "lower the learning rate (train.lr, or the prune section's lr) or raise "
            "train.warmup_steps, then start over (--no-resume or a new --out)"
        )

    def validate(self) -> float:
        """The task's validation loss (all ranks agree)."""
        return self.task.validate(self.model, self.world)

    def fit(self, steps: int | None = None) -> History:
        """Train until `steps` (default cfg.steps) optimizer steps are done; validate and checkpoint.

        Raises:
            PrunekitError: the loss, a gradient or the validation loss is NaN / infinite.
        """
        total = steps if steps is not None else self.cfg.steps
        self._t0, self._units0 = time.perf_counter(), self.history.tokens_seen
        with tqdm(
            total=total, initial=self.step, disable=not self.progress, unit="step", desc=self.label
        ) as bar:
            while self.step < total:
                self._fit_step(total, bar)
        return self.history

    def _fit_step(self, total: int, bar: tqdm) -> None:
        """One step of `fit`: train, log every log_every, validate / checkpoint when due."""
        loss = self.train_step()
        recent = self.history.pending
        recent.append(loss)
        self.history.tokens_seen += self._last_units
        if self.step % self.cfg.log_every == 0 or self.step == total:
            mean = sum(recent) / len(recent)
            self.history.train.append((self.step, mean))
            recent.clear()
            units = self.history.tokens_seen - self._units0
            rate = units / max(1e-9, time.perf_counter() - self._t0)
            shown = {"loss": f"{mean:.3f}"}
            if self.task.unit == "tok":
                shown["ppl"] = f"{math.exp(min(mean, 50)):.1f}"
            bar.set_postfix(shown | {f"{self.task.unit}_s": f"{rate:,.0f}"})
        bar.update(1)
        if self.step % self.cfg.eval_every == 0 or self.step == total:
            self.history.train_seconds += time.perf_counter() - self._t0
            self._validate_and_save()
            self._t0, self._units0 = time.perf_counter(), self.history.tokens_seen
        elif self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
            self.history.train_seconds += time.perf_counter() - self._t0
            if self.world.is_main:
                self.save(self.checkpoint_dir / "last")
            self._t0, self._units0 = time.perf_counter(), self.history.tokens_seen

    def _validate_and_save(self) -> None:
        val = self.validate()
        if not math.isfinite(val):
            self._diverged(self.step, lr_at(self.step - 1, self.cfg), f"validation loss is {val}")
        self.history.valid.append((self.step, val))
        log.info("step %d valid loss %.4f ppl %.2f", self.step, val, math.exp(min(val, 50)))
        improved = val < self.history.best_valid_loss
        if improved:
            self.history.best_valid_loss = val
        if self.world.is_main:  # best first: a kill between the two then redoes this step
            if improved:
                self.save(self.checkpoint_dir / "best")
            self.save(self.checkpoint_dir / "last")

    def _state(self) -> dict[str, Any]:
        h = self.history
        return {
            "model_config": registered_config(self.model),  # None: a model of the user's own
            "step": self.step,
            "train_config": self.cfg.model_dump(mode="json"),
            "history": {
                "train": h.train,
                "valid": h.valid,
                "best_valid_loss": h.best_valid_loss if math.isfinite(h.best_valid_loss) else None,
                "tokens_seen": h.tokens_seen,
                "train_seconds": h.train_seconds,
                "pending": list(h.pending),
            },
            "run": self.run_state,
        }

    def save(self, path: str | Path) -> None:
        """Checkpoint model, optimizer, RNG, history and callback state to `path`."""
        state, extra = self._state(), {}
        state["callbacks"] = {}
        for i, cb in enumerate(self.callbacks):
            if hasattr(cb, "state_dict"):
                cb_state = cb.state_dict()
                state["callbacks"][str(i)] = cb_state["meta"]
                extra.update({f"cb{i}/{k}": v for k, v in cb_state["tensors"].items()})
        save_checkpoint(
            path, self.model, state, optimizer=self.optimizer, extra_tensors=extra, files=self.files
        )

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at `path` stopped (same losses as never stopping).

        The optimizer's moments and step counts come from the checkpoint; its hyperparameters
        (betas, weight decay, ...) stay those of `cfg`.

        Raises:
            PrunekitError: a corrupt, changed or non-finite checkpoint (see `load_checkpoint`).
        """
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        state, extra = load_checkpoint(
            path, self.model, optimizer=self.optimizer, restore_rng_state=True
        )
        for group, own in zip(self.optimizer.param_groups, hyper, strict=True):
            group.update(own)
        try:
            self._restore(state, extra)
        except PrunekitError:
            raise
        except CORRUPT_STATE as exc:
            raise PrunekitError(
                f"checkpoint {Path(path) / 'state.json'} has a corrupt run state "
                f"({type(exc).__name__}: {str(exc)[:200]}): delete the checkpoint and resume "
                "from another one or start over"
            ) from None

    def _restore(self, state: dict[str, Any], extra: dict[str, torch.Tensor]) -> None:
        """Step, history, run state and callback states from a checkpoint's state (type-checked)."""
        h = state["history"]
        best = h["best_valid_loss"]
        self.history = History(
            train=[(_count(s), _number(v)) for s, v in h["train"]],
            valid=[(_count(s), _number(v)) for s, v in h["valid"]],
            best_valid_loss=math.inf if best is None else _number(best),
            tokens_seen=_count(h["tokens_seen"]),
            train_seconds=_number(h["train_seconds"]),
            pending=[_number(v) for v in h.get("pending", [])],
        )
        self.step = _count(state["step"])
        run = state.get("run", {})
        if not isinstance(run, dict):
            raise TypeError("run state is not a mapping")
        self.run_state = run
        for i, cb in enumerate(self.callbacks):
            if hasattr(cb, "load_state_dict"):
                prefix = f"cb{i}/"
                tensors = {k[len(prefix) :]: v for k, v in extra.items() if k.startswith(prefix)}
                cb.load_state_dict({"meta": state["callbacks"][str(i)], "tensors": tensors})


def _number(value: Any) -> float:
    """`value` if it is a finite int or float (not a bool), else TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not finite")
    return value


def _count(value: Any) -> int:
    """`value` if it is an int >= 0 (not a bool), else TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{value!r} is not a count")
    return value
