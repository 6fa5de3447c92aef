"""FastRNN and FastGRNN cells (Kusupati et al. 2018, seed 002) and a batch-first layer running them.

FastRNN:  h~_t = nl(W x_t + U h_{t-1} + b);  h_t = sigmoid(alpha) h~_t + sigmoid(beta) h_{t-1}.
FastGRNN: z_t = gate_nl(W x_t + U h_{t-1} + b_g);  h~_t = update_nl(W x_t + U h_{t-1} + b_h);
          h_t = z_t * h_{t-1} + (sigmoid(zeta) (1 - z_t) + sigmoid(nu)) * h~_t.
W and U are shared by the gate and the update, so a step costs one W x and one U h.

`FastRNNLayer` reads U's (masked, low-rank) weights once per sequence, not once per step
(`fast_loop`), falling back to the cells' own `step` when U is not plain `nn.Linear`s (e.g. after
compaction). The batch-1 inference path is `prunekit.runtime.fastgrnn` (TorchScript).

W and U are ordinary `nn.Linear`s (no bias), or with a rank two of them in sequence
(W = W2 W1: `w.0` is (rank, d_in), `w.1` is (d_hidden, rank)), so prunekit's Pruner, checkpoints and
the LSQ schedule (`prunekit.prune.lsq`) apply unchanged. Initialisation follows EdgeML
(`edgeml_pytorch.graph.rnn`): matrices 0.1 N(0, 1), biases 1, zeta 1, nu -4, alpha -3, beta 3
(pre-sigmoid), and the parameter layout maps one to one onto EdgeML's cells
(`prunekit.models.edgeml_ref`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrize import type_before_parametrizations

from prunekit.errors import PrunekitError


def quant_sigm(x: Tensor) -> Tensor:
    """Piecewise-linear sigmoid: clip((x + 1) / 2, 0, 1) (EdgeML's quantSigm)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def quant_tanh(x: Tensor) -> Tensor:
    """Piecewise-linear tanh: clip(x, -1, 1) (EdgeML's quantTanh)."""
    return x.clamp(-1.0, 1.0)


NONLINEARITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "quantSigm": quant_sigm,
    "quantTanh": quant_tanh,
    "relu": torch.relu,
}


def check_nonlinearity(name: str, value: str) -> None:
    """Raise a PrunekitError unless `value` names a cell nonlinearity."""
    if value not in NONLINEARITIES:
        allowed = ", ".join(repr(n) for n in NONLINEARITIES)
        raise PrunekitError(f"{name}={value!r} is not a nonlinearity: choose one of {allowed}")


def low_rank(d_in: int, d_out: int, rank: int | None) -> nn.Module:
    """`nn.Linear(d_in, d_out)` without bias, or with a rank `Linear(d_in, r) -> Linear(r, d_out)`.

    Every weight starts at 0.1 N(0, 1), as in EdgeML.
    """
    if rank is None:
        layer: nn.Module = nn.Linear(d_in, d_out, bias=False)
    else:
        if rank < 1:
            raise PrunekitError(f"rank={rank!r} must be >= 1 (or None for a full-rank matrix)")
        layer = nn.Sequential(nn.Linear(d_in, rank, bias=False), nn.Linear(rank, d_out, bias=False))
    for m in layer.modules():
        if isinstance(m, nn.Linear):
            with torch.no_grad():
                m.weight.normal_(0.0, 0.1)
    return layer


class _FastCell(nn.Module):
    """What FastRNN and FastGRNN share: W (input), U (state), sizes and `forward`."""

    def __init__(self, d_in: int, d_hidden: int, w_rank: int | None, u_rank: int | None):
        super().__init__()
        self.d_in, self.d_hidden = d_in, d_hidden
        self.w_rank, self.u_rank = w_rank, u_rank
        self.w = low_rank(d_in, d_hidden, w_rank)
        self.u = low_rank(d_hidden, d_hidden, u_rank)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """One step: x (B, d_in), h (B, d_hidden) -> new h (B, d_hidden)."""
        return self.step(self.w(x), h)

    def step(self, wx: Tensor, h: Tensor) -> Tensor:
        """One step from a precomputed W x (B, d_hidden) and h (B, d_hidden)."""
        raise NotImplementedError


class FastGRNNCell(_FastCell):
    """FastGRNN cell (seed 002 eq. 3-4); EdgeML's `FastGRNNCell` with the same weights.

    Args:
        d_in: input features.
        d_hidden: hidden units.
        w_rank / u_rank: ranks of W and U (None: full rank).
        gate_nl / update_nl: "sigmoid", "tanh", "quantSigm", "quantTanh" or "relu".
        zeta_init / nu_init: pre-sigmoid initial values of zeta and nu.
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        *,
        w_rank: int | None = None,
        u_rank: int | None = None,
        gate_nl: str = "sigmoid",
        update_nl: str = "tanh",
        zeta_init: float = 1.0,
        nu_init: float = -4.0,
    ):
        super().__init__(d_in, d_hidden, w_rank, u_rank)
        check_nonlinearity("gate_nl", gate_nl)
        check_nonlinearity("update_nl", update_nl)
        self.gate_nl, self.update_nl = gate_nl, update_nl
        self.bias_gate = nn.Parameter(torch.ones(d_hidden))
        self.bias_update = nn.Parameter(torch.ones(d_hidden))
        self.zeta = nn.Parameter(torch.full((1,), float(zeta_init)))
        self.nu = nn.Parameter(torch.full((1,), float(nu_init)))

    def step(self, wx: Tensor, h: Tensor) -> Tensor:
        pre = wx + self.u(h)  # (B, H)
        z = NONLINEARITIES[self.gate_nl](pre + self.bias_gate)  # (B, H)
        c = NONLINEARITIES[self.update_nl](pre + self.bias_update)  # (B, H)
        return z * h + (torch.sigmoid(self.zeta) * (1.0 - z) + torch.sigmoid(self.nu)) * c


class FastRNNCell(_FastCell):
    """FastRNN cell (seed 002 eq. 1-2); EdgeML's `FastRNNCell` with the same weights.

    Args:
        d_in, d_hidden, w_rank, u_rank: as for `FastGRNNCell`.
        update_nl: nonlinearity of h~.
        alpha_init / beta_init: pre-sigmoid initial values of alpha and beta.
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        *,
        w_rank: int | None = None,
        u_rank: int | None = None,
        update_nl: str = "tanh",
        alpha_init: float = -3.0,
        beta_init: float = 3.0,
    ):
        super().__init__(d_in, d_hidden, w_rank, u_rank)
        check_nonlinearity("update_nl", update_nl)
        self.update_nl = update_nl
        self.bias_update = nn.Parameter(torch.ones(d_hidden))
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.beta = nn.Parameter(torch.full((1,), float(beta_init)))

    def step(self, wx: Tensor, h: Tensor) -> Tensor:
        c = NONLINEARITIES[self.update_nl](wx + self.u(h) + self.bias_update)  # (B, H)
        return torch.sigmoid(self.beta) * h + torch.sigmoid(self.alpha) * c


FastCell = FastGRNNCell | FastRNNCell


def _apply(v: Tensor, weights: list[Tensor]) -> Tensor:
    """v @ W^T for W given as a list of factors applied in order (rank r: [(r, d), (H, r)])."""
    for w in weights:
        v = torch.nn.functional.linear(v, w)
    return v


def fast_loop(
    wx: Tensor, h: Tensor, u: list[Tensor], cell: FastGRNNCell | FastRNNCell
) -> tuple[Tensor, Tensor]:
    """Every step of `cell` given wx (B, T, H) = W x_t, h (B, H) and U's factors (see `_apply`).

    Returns:
        outputs (B, T, H) and the last state h_T (B, H).
    """
    update = NONLINEARITIES[cell.update_nl]
    outs = []
    if isinstance(cell, FastGRNNCell):
        gate = NONLINEARITIES[cell.gate_nl]
        keep_c, keep_h = torch.sigmoid(cell.zeta), torch.sigmoid(cell.nu)  # (1,)
        for t in range(wx.shape[1]):
            pre = wx[:, t] + _apply(h, u)  # (B, H)
            z, c = gate(pre + cell.bias_gate), update(pre + cell.bias_update)
            h = z * h + (keep_c * (1.0 - z) + keep_h) * c
            outs.append(h)
    else:
        alpha, beta = torch.sigmoid(cell.alpha), torch.sigmoid(cell.beta)
        for t in range(wx.shape[1]):
            h = beta * h + alpha * update(wx[:, t] + _apply(h, u) + cell.bias_update)
            outs.append(h)
    return torch.stack(outs, dim=1), h


def linear_weights(module: nn.Module) -> list[Tensor] | None:
    """The weights of a bias-free `nn.Linear` or a `Sequential` of them, in order; else None."""
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    plain = all(type_before_parametrizations(m) is nn.Linear for m in layers)
    if not plain or any(m.bias is not None for m in layers):
        return None
    return [m.weight for m in layers]  # a parametrized (masked) weight is read once here


class FastRNNLayer(nn.Module):
    """Run a FastRNN / FastGRNN cell over a batch-first sequence.

    W x_t does not depend on the state, so it is computed for all steps at once; only U h runs
    step by step.
    """

    def __init__(self, cell: FastCell):
        super().__init__()
        self.cell = cell

    @property
    def hidden_size(self) -> int:
        return self.cell.d_hidden

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, d_in), h0 (B, d_hidden) or None (zeros) -> outputs (B, T, d_hidden), h_T (B, d_hidden)."""
        B, T, _ = x.shape
        h = x.new_zeros(B, self.cell.d_hidden) if h0 is None else h0
        wx = self.cell.w(x)  # (B, T, H)
        u = linear_weights(self.cell.u)
        if u is not None:
            return fast_loop(wx, h, u, self.cell)
        outs = []
        for t in range(T):
            h = self.cell.step(wx[:, t], h)
            outs.append(h)
        return torch.stack(outs, dim=1), h  # (B, T, H), (B, H)
