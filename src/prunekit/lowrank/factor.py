"""W = U V as a parametrization: factored training at any rank, for Linears and LSTM/GRU gates.

`factorize(model, plan)` re-expresses each named matrix as the product of two trainable factors
through `torch.nn.utils.parametrize` (like prunekit's masks), so `module.weight` still reads the
full (m, n) matrix and every forward pass, `state_dict`, checkpoint and `deepcopy` keeps working:

    U = module.parametrizations.<attr>.original0   # (m, r)
    V = module.parametrizations.<attr>.original1   # (r, n)

The factors start balanced from the SVD of the current W = u diag(s) vh:
U = u_r diag(s_r)^(1/2), V = diag(s_r)^(1/2) vh_r (exactly W at full rank r = min(m, n); the
best rank-r approximation otherwise, as seed 000's stage-2 warm start).

Which matrices: every Linear weight and, for nn.LSTM / nn.GRU / nn.RNN, each layer's (and
direction's) `weight_ih_l{k}` and `weight_hh_l{k}` as ONE stacked matrix per kind (all gates
together, (G*H, in) and (G*H, H)). That is the GEMM the kernels run (cuDNN and seed 000's Deep
Speech 2 compute all gates of one kind in one product), and a stacked factorization shares V
across the gates, so the compact layer is two thin matmuls per gate stack (x -> V x -> U (V x));
factoring each gate's block separately would need G of them. Recurrent matrices (`weight_hh`,
`weight_hr`) and the others are told apart (`Matrix.recurrent`) for the two coefficients of the
trace-norm regularizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from prunekit.errors import PrunekitError
from prunekit.prune.masks import _own_class, detach_rnn_flat_weights, get_mask
from prunekit.prune.scope import ScopeConfig, resolve_scope

LOWRANK_TYPES = ("Linear", "LSTM", "GRU", "RNN")
Plan = Mapping[str, int]  # matrix name -> rank


def default_scope() -> ScopeConfig:
    """Every Linear and LSTM / GRU / RNN weight (embeddings are lookups: never factored)."""
    return ScopeConfig(module_types=LOWRANK_TYPES)


@dataclass
class Matrix:
    """One matrix a low-rank run works on: `getattr(module, attr)`, called `name` in the model."""

    name: str
    module: nn.Module
    attr: str
    recurrent: bool

    @property
    def weight(self) -> Tensor:
        """The (m, n) matrix as the model uses it (U V when factored)."""
        return getattr(self.module, self.attr)

    @property
    def shape(self) -> tuple[int, int]:
        m, n = self.weight.shape
        return int(m), int(n)


def is_recurrent(attr: str) -> bool:
    """Hidden-to-hidden matrices of an RNN (`weight_hh_l*`, LSTM projections `weight_hr_l*`)."""
    return attr.startswith(("weight_hh", "weight_hr"))


def select_matrices(model: nn.Module, scope: ScopeConfig | None = None) -> list[Matrix]:
    """The Linear and RNN matrices of `model` in `scope` (tied or embedding weights left out).

    Raises:
        PrunekitError: the scope selects nothing factorable.
    """
    scope = scope or default_scope()
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    out = []
    for t in resolve_scope(model, scope):
        if t.kind not in ("linear", "rnn") or uses.get(id(t.param), 1) > 1:
            continue  # an embedding, a Conv1D or a tied weight (e.g. to an embedding)
        a = t.aliases[0]
        out.append(Matrix(plain(t.name), a.module, a.attr, is_recurrent(a.attr)))
    if not out:
        raise PrunekitError(
            f"no Linear / LSTM / GRU / RNN matrix in the low-rank scope {scope.module_types}: "
            "widen lowrank.scope (tied output layers and embeddings are never factored)"
        )
    return out


def plain(name: str) -> str:
    """`rnn.parametrizations.weight_hh_l0.original0` -> `rnn.weight_hh_l0`."""
    name = name.replace(".parametrizations.", ".")
    for suffix in (".original0", ".original1", ".original"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@torch.no_grad()
def balanced_factors(w: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """(U (m, r), V (r, n)) = (u_r s_r^(1/2), s_r^(1/2) vh_r): the best rank-r U V of `w`."""
    u, s, vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(w.dtype), (root[:, None] * vh[:rank]).to(w.dtype)


class LowRank(nn.Module):
    """Parametrization W = U V; `right_inverse(W)` gives its balanced rank-`rank` factors."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = int(rank)

    def forward(self, U: Tensor, V: Tensor) -> Tensor:
        """U (m, r), V (r, n) -> W (m, n)."""
        return U @ V

    def right_inverse(self, W: Tensor) -> tuple[Tensor, Tensor]:
        return balanced_factors(W, self.rank)

    def extra_repr(self) -> str:
        return f"rank={self.rank}"


def get_lowrank(module: nn.Module, attr: str) -> LowRank | None:
    """The `LowRank` parametrizing `module.<attr>`, or None."""
    if not parametrize.is_parametrized(module, attr):
        return None
    return next((p for p in module.parametrizations[attr] if isinstance(p, LowRank)), None)


def factors(module: nn.Module, attr: str) -> tuple[nn.Parameter, nn.Parameter]:
    """The trainable (U (m, r), V (r, n)) behind `module.<attr>`.

    Raises:
        PrunekitError: the tensor is not factored.
    """
    if get_lowrank(module, attr) is None:
        raise PrunekitError(f"{attr} is not factored: call prunekit.lowrank.factorize first")
    p = module.parametrizations[attr]
    return p.original0, p.original1


def _module_attr(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    mod_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(mod_name)
    except AttributeError:
        module = None
    if module is None or not hasattr(module, attr):
        raise PrunekitError(
            f"the low-rank plan names {name!r}, which this model does not have: build the model "
            "with the architecture the plan was made for"
        )
    return module, attr


def factorize(model: nn.Module, plan: Plan) -> nn.Module:
    """Parametrize each `plan` matrix as W = U V at its rank, starting from the SVD of W (in place).

    A matrix that is already factored is first multiplied out (its current U V), so this also
    truncates (seed 000's stage 2). Build the optimizer afterwards: the factors are new Parameters.

    Matrices are factored in the model's parameter order whatever the order of `plan`, so the
    factors' order (and an optimizer's state built on them) does not depend on how the plan was
    stored.

    Raises:
        PrunekitError: an unknown name, a rank outside [1, min(m, n)], or a masked matrix.
    """
    order = {plain(n): i for i, (n, _) in enumerate(model.named_parameters())}
    for name in sorted(plan, key=lambda n: order.get(n, len(order))):
        rank = plan[name]
        module, attr = _module_attr(model, name)
        if get_mask(module, attr) is not None:
            raise PrunekitError(
                f"{name} has a pruning mask: finalize the pruning (prunekit.prune.finalize) "
                "before factoring it"
            )
        unfactor_one(module, attr)
        m, n = getattr(module, attr).shape
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= min(m, n):
            raise PrunekitError(
                f"rank {rank!r} of {name} must be an integer in [1, {min(m, n)}] for its "
                f"({m}, {n}) matrix: fix the plan"
            )
        _own_class(module)
        parametrize.register_parametrization(module, attr, LowRank(rank))
        if isinstance(module, nn.RNNBase) and not any(
            h is detach_rnn_flat_weights for h in module._forward_hooks.values()
        ):
            module.register_forward_hook(detach_rnn_flat_weights)  # deepcopy-safe, as masks
    return model


def unfactor_one(module: nn.Module, attr: str) -> None:
    """Replace a factored `module.<attr>` by a plain Parameter holding U V (no-op if not factored)."""
    if get_lowrank(module, attr) is None:
        return
    if len(module.parametrizations[attr]) != 1:
        raise PrunekitError(f"{attr} carries other parametrizations besides LowRank: remove them")
    _own_class(module)
    parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    if isinstance(module, nn.RNNBase):
        module._init_flat_weights()


def factored(model: nn.Module) -> list[Matrix]:
    """Every factored matrix of `model`, in module order."""
    out = []
    for mod_name, m in model.named_modules():
        if not parametrize.is_parametrized(m):
            continue
        for attr in m.parametrizations:
            if get_lowrank(m, attr) is not None:
                name = f"{mod_name}.{attr}" if mod_name else attr
                out.append(Matrix(name, m, attr, is_recurrent(attr)))
    return out


def unfactor(model: nn.Module) -> nn.Module:
    """Multiply every factored matrix out into a plain Parameter (in place); returns `model`."""
    for mat in factored(model):
        unfactor_one(mat.module, mat.attr)
    return model


def ranks_of(model: nn.Module) -> dict[str, int]:
    """The current plan of `model`: factored matrix name -> rank."""
    return {mat.name: int(factors(mat.module, mat.attr)[0].shape[1]) for mat in factored(model)}


def full_rank_plan(matrices: list[Matrix]) -> dict[str, int]:
    """Every matrix at rank min(m, n): W = U V exactly (seed 000's stage 1)."""
    return {mat.name: min(mat.shape) for mat in matrices}


def plan_from_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, int]:
    """The plan a factored model's `state_dict` was saved with (from the shapes of its U's)."""
    plan = {}
    for key, value in state_dict.items():
        if ".parametrizations." in f".{key}" and key.endswith(".original0") and value.dim() == 2:
            plan[plain(key)] = int(value.shape[1])
    return plan


def factored_params(m: int, n: int, rank: int) -> int:
    """Parameters of U (m, r) and V (r, n)."""
    return rank * (m + n)
