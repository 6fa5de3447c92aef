"""LSQ training of FastRNN / FastGRNN (seed 002 §3.3) with prunekit's Pruner.

The three stages are one `IHT` schedule (`prunekit.prune.schedules`): dense low-rank training,
iterative hard thresholding every `every` steps with the support fixed in between, and retraining
on the frozen support. The kept fraction differs for W (s_w) and U (s_u), so there are two
pruners, each with a per-layer budget over its own tensors (every factor W1, W2 / U1, U2 keeps its
own top-s, as `||W_i||_0 <= s_w^i` in the paper and EdgeML's `hardThreshold` per matrix):

    pruners = lsq_pruners(model, s_w=0.3, s_u=0.3, total_steps=3000)
    Trainer(model, task, cfg, out, callbacks=pruners).fit()
"""

from __future__ import annotations

from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models.fastgrnn import FastGRNNCell, FastRNNCell
from prunekit.prune import IHT, PruneConfig, Pruner, ScopeConfig


def fast_cell_names(model: nn.Module) -> list[str]:
    """Names of the FastRNN / FastGRNN cells inside `model`."""
    return [n for n, m in model.named_modules() if isinstance(m, FastGRNNCell | FastRNNCell)]


def lsq_configs(model: nn.Module, s_w: float, s_u: float, schedule_of) -> list[PruneConfig]:
    """One magnitude / unstructured / per-layer PruneConfig for W and one for U (density < 1 only).

    Args:
        model: holds one or more fast cells.
        s_w, s_u: kept fractions of every W and U factor, in (0, 1].
        schedule_of: density -> IHT schedule.

    Raises:
        PrunekitError: no fast cell in `model`, or a density outside (0, 1].
    """
    cells = fast_cell_names(model)
    if not cells:
        raise PrunekitError(
            f"{type(model).__name__} has no FastRNN / FastGRNN cell: LSQ training needs a model "
            "with one (e.g. arch fastgrnn or a kws model with cell fastgrnn)"
        )
    configs = []
    for which, density in (("w", s_w), ("u", s_u)):
        schedule = schedule_of(density)  # validates the density
        if density >= 1.0:
            continue
        prefix = [f"{c}.{which}.*" if c else f"{which}.*" for c in cells]
        scope = ScopeConfig(module_types=("Linear",), include=tuple(prefix))
        configs.append(PruneConfig(criterion="magnitude", schedule=schedule, scope=scope))
    return configs


def lsq_pruners(
    model: nn.Module, s_w: float, s_u: float, total_steps: int, every: int = 15
) -> list[Pruner]:
    """Attached Pruners for LSQ training over `total_steps` split in thirds (EdgeML's split).

    Pass them to the Trainer as callbacks (they adopt its optimizer), or call `.step(t)` yourself.
    """
    configs = lsq_configs(model, s_w, s_u, lambda d: IHT.thirds(d, total_steps, every))
    return [Pruner(model, c).attach() for c in configs]
