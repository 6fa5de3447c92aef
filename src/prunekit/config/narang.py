"""The `narang:` settings of a `schedule: narang` prune section (Narang et al. 2017).

    prune:
      - name: narang
        schedule: narang
        criterion: magnitude
        narang:
          start: null          # iterations; null: the paper's heuristics (start of epoch 2,
          ramp: null           #   ramp at 25 %, end at 50 % of the training steps)
          end: null
          freq: null           # null: 100 (less on very short runs)
          slope_mult: 1.5      # phi / theta; 1.5 makes the threshold reach q at `end`
          q_percentile: 90
          q_per: type          # q per layer type (recurrent / linear), or per tensor
          q: null              # explicit {recurrent: 0.11, linear: 0.16}; null: from the dense
                               #   baseline of the recipe (prunekit run) or `q_from`
          q_from: null         # a trained dense checkpoint folder to take q from
          compare: [magnitude, taylor]   # also run the cubic schedule with these criteria to
                                         #   the sparsity Narang reached, same window

The section trains the model from scratch with the ramp (the paper's single training, no
retraining phase); `sizes`, `steps`, `ramp`, `frequency` and `lr` of the section do not apply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class NarangSection(BaseModel):
    """Iterations, slopes and the source of q of a Narang run (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int | None = Field(None, ge=0)
    ramp: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=1)
    freq: int | None = Field(None, ge=1)
    slope_mult: float = Field(1.5, gt=0)
    q_percentile: float = Field(90.0, gt=0, le=100)
    q_per: Literal["type", "tensor"] = "type"
    q: dict[str, float] | None = None
    q_from: str | None = None
    compare: list[str] = Field(default_factory=list)
