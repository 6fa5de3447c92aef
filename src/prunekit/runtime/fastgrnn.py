"""Float inference of a FastGRNN / FastRNN keyword classifier as one frozen TorchScript module.

At batch 1 a FastGRNN step is a few hundred multiply-adds, so the eager model's cost is Python and
operator dispatch, not arithmetic (15-30 ms per 1 s clip vs about 1-5 ms for `nn.GRU`, whose time
loop runs in C++). `fast_kws(model)` compiles the same computation with the time loop inside
TorchScript, the weights read once (masked, low-rank factors kept as factors) and the step
rearranged to 9 operators:

    pre = W x_t + b_update + U h            (W x_t + b for all t at once; U h as addmm)
    c   = update_nl(pre)
    z   = gate_nl(pre + b_gate - b_update)  (quantSigm as one add with alpha 0.5, then a clamp)
    h   = (zeta + nu) c + z (h - zeta c)    (= z h + (zeta (1 - z) + nu) c)

with zeta = sigmoid(zeta), nu = sigmoid(nu) as constants. Logits match the eager model to float
rounding (tested); the module is frozen, so the nonlinearity branches fold away.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.models.fastgrnn import FastGRNNCell, FastRNNLayer, linear_weights
from prunekit.runtime.kernels import script


class _FastKWS(nn.Module):
    """(B, T, F) clips -> (B, C) logits; weights stored transposed ((in, out)) for matmul."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        cell = model.rnn.cell
        w, u = linear_weights(cell.w), linear_weights(cell.u)
        with torch.no_grad():
            self.w = [t.detach().t().contiguous() for t in w]  # (F, r), (r, H) or (F, H)
            self.u = [t.detach().t().contiguous() for t in u]
            self.b_update = cell.bias_update.detach().clone()  # (H,)
            self.gated = isinstance(cell, FastGRNNCell)
            if self.gated:
                shift = (cell.bias_gate - cell.bias_update).detach()  # (H,)
                self.keep_c = float(torch.sigmoid(cell.zeta.detach()))
                self.keep_h = float(torch.sigmoid(cell.nu.detach()))
                self.gate_nl = cell.gate_nl
            else:
                shift = torch.zeros_like(self.b_update)
                self.keep_c = float(torch.sigmoid(cell.alpha.detach()))
                self.keep_h = float(torch.sigmoid(cell.beta.detach()))
                self.gate_nl = "none"
            self.gate_shift = shift.clone()
            self.gate_half = (0.5 * shift + 0.5).clone()  # quantSigm: clip(pre/2 + shift/2 + 1/2)
            self.update_nl = cell.update_nl
            self.head_w = model.head.weight.detach().t().contiguous()  # (H, C)
            self.head_b = model.head.bias.detach().clone()  # (C,)

    def _update(self, x: Tensor) -> Tensor:
        if self.update_nl == "quantTanh":
            return x.clamp(-1.0, 1.0)
        if self.update_nl == "tanh":
            return torch.tanh(x)
        if self.update_nl == "sigmoid":
            return torch.sigmoid(x)
        if self.update_nl == "quantSigm":
            return torch.add(torch.full_like(x, 0.5), x, alpha=0.5).clamp(0.0, 1.0)
        return torch.relu(x)

    def _gate(self, pre: Tensor) -> Tensor:
        if self.gate_nl == "quantSigm":
            return torch.add(self.gate_half, pre, alpha=0.5).clamp(0.0, 1.0)
        x = pre + self.gate_shift
        if self.gate_nl == "sigmoid":
            return torch.sigmoid(x)
        if self.gate_nl == "tanh":
            return torch.tanh(x)
        if self.gate_nl == "quantTanh":
            return x.clamp(-1.0, 1.0)
        return torch.relu(x)

    def forward(self, x: Tensor) -> Tensor:
        wx = x
        for w in self.w:
            wx = torch.matmul(wx, w)
        wx = wx + self.b_update  # (B, T, H)
        h = torch.zeros(x.shape[0], self.b_update.shape[0], dtype=x.dtype)  # (B, H)
        n_u = len(self.u)
        for t in range(x.shape[1]):
            v = h
            for i in range(n_u - 1):
                v = torch.mm(v, self.u[i])  # (B, r)
            pre = torch.addmm(wx[:, t], v, self.u[n_u - 1])  # (B, H)
            c = self._update(pre)
            if self.gated:
                z = self._gate(pre)
                h = torch.addcmul(c * (self.keep_c + self.keep_h), z, h - self.keep_c * c)
            else:
                h = torch.add(h * self.keep_h, c, alpha=self.keep_c)
        return torch.addmm(self.head_b, h, self.head_w)  # (B, C)


def fast_kws(model: nn.Module) -> torch.jit.ScriptModule:
    """A frozen TorchScript module computing `model`'s logits: (B, T, F) clips -> (B, C).

    Args:
        model: a `KWSClassifier` with a FastGRNN or FastRNN cell whose W and U are bias-free
            `nn.Linear`s (full or low rank; pruning masks are applied once, here).

    Raises:
        PrunekitError: another kind of model.
    """
    rnn = getattr(model, "rnn", None)
    cell = getattr(rnn, "cell", None)
    if (
        not isinstance(rnn, FastRNNLayer)
        or linear_weights(cell.w) is None
        or (linear_weights(cell.u) is None)
    ):
        raise PrunekitError(
            f"fast_kws compiles a KWSClassifier with a FastGRNN / FastRNN cell of plain Linear "
            f"weights, not {type(model).__name__}: time other models with their own forward"
        )
    scripted = script(_FastKWS(model).eval())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.freeze(scripted)
