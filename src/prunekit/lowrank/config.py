"""The `lowrank:` recipe section: seed 000's two stages, and grids of them.

    lowrank:
      - name: tracenorm
        regularizer: tracenorm         # or l2 (the baseline: same coefficients on |W|^2)
        lambda_rec: [0, 1.0e-5, 1.0e-4]   # a number or a list: lists expand into a grid
        lambda_nonrec: [0, 1.0e-5]
        thresholds: [0.8, 0.9, 0.95, 0.99]   # one stage 2 per variance fraction
        stage1_steps: null             # null: train.steps; a few epochs = the paper's short variant
        warm_steps: 0                  # the first steps of stage 1 plain and unregularized
        stage2_steps: 400
        stage2_lr: 1.0e-3
        nu_every: 50
        scope: {exclude: [lm_head]}    # a prunekit ScopeConfig (Linear/LSTM/GRU/RNN weights)

Each grid point is one stage-1 run followed by one stage-2 run per threshold. `warm_steps`
warm-starts stage 1 (seed 000, section 3.2.3): its first `warm_steps` steps train the plain model
without a regularizer (the same in both arms), then the matrices are factored at full rank (W = U V
exactly) and the regularizer is switched on. A CTC model trained factored from its random
initialization can stay on the all-blank plateau where the plain model leaves it.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prunekit.lowrank.factor import LOWRANK_TYPES
from prunekit.prune.scope import ScopeConfig


class LowRankSection(BaseModel):
    """One low-rank study: stage 1 (factored + trace norm, or plain + l2), stage 2 per threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    regularizer: Literal["tracenorm", "l2"] = "tracenorm"
    lambda_rec: float | list[float] = 1e-5
    lambda_nonrec: float | list[float] = 1e-5
    thresholds: list[float] = Field(default_factory=lambda: [0.9], min_length=1)
    stage1_steps: int | None = Field(None, ge=1)
    warm_steps: int = Field(0, ge=0)
    stage2_steps: int = Field(200, ge=1)
    stage2_lr: float = Field(1e-3, gt=0)
    nu_every: int = Field(50, ge=1)
    scope: dict[str, Any] = Field(default_factory=dict)

    @field_validator("lambda_rec", "lambda_nonrec")
    @classmethod
    def _non_negative(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values or any(x < 0 for x in values):
            raise ValueError("must be a number >= 0 or a non-empty list of them")
        return v

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < x <= 1.0 for x in v):
            raise ValueError("every threshold must be in (0, 1], e.g. [0.8, 0.9, 0.99]")
        return v

    def scope_config(self) -> ScopeConfig:
        """The section's scope as a ScopeConfig (default module types: Linear, LSTM, GRU, RNN)."""
        return ScopeConfig(**{"module_types": LOWRANK_TYPES, **self.scope})

    def grid(self) -> list[LowRankSection]:
        """One section per (lambda_rec, lambda_nonrec) pair, named `<name>-rec<a>-nonrec<b>` when
        a coefficient is a list (a single section is returned unchanged)."""
        rec = self.lambda_rec if isinstance(self.lambda_rec, list) else [self.lambda_rec]
        non = self.lambda_nonrec if isinstance(self.lambda_nonrec, list) else [self.lambda_nonrec]
        if not isinstance(self.lambda_rec, list) and not isinstance(self.lambda_nonrec, list):
            return [self]
        return [
            self.model_copy(
                update={
                    "name": f"{self.name}-rec{a:g}-nonrec{b:g}",
                    "lambda_rec": a,
                    "lambda_nonrec": b,
                }
            )  # fmt: skip
            for a, b in itertools.product(rec, non)
        ]
