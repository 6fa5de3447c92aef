"""Low rank (seed 000): factored W = U V training with a trace-norm regularizer, then truncated SVD.

- `factor`: the `LowRank` parametrization, `factorize(model, plan)`, `select_matrices`, `unfactor`;
- `svd`: `variance_plan` (stage 2's rank per matrix), `nu` (the nondimensional trace norm);
- `tracenorm`: `TraceNorm` / `L2` regularizers, `RegularizedTask`, `NuLogger`;
- `config`: the recipe's `lowrank:` section. The two stages run in `prunekit.pipelines.lowrank`.
"""

from prunekit.lowrank.config import LowRankSection
from prunekit.lowrank.factor import (
    LowRank,
    Matrix,
    factored,
    factorize,
    factors,
    full_rank_plan,
    plan_from_state_dict,
    ranks_of,
    select_matrices,
    unfactor,
)
from prunekit.lowrank.svd import nu, rank_for_variance, variance_plan
from prunekit.lowrank.tracenorm import L2, NuLogger, RegularizedTask, TraceNorm

__all__ = [
    "L2",
    "LowRank",
    "LowRankSection",
    "Matrix",
    "NuLogger",
    "RegularizedTask",
    "TraceNorm",
    "factored",
    "factorize",
    "factors",
    "full_rank_plan",
    "nu",
    "plan_from_state_dict",
    "rank_for_variance",
    "ranks_of",
    "select_matrices",
    "unfactor",
    "variance_plan",
]
