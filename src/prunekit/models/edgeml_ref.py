"""EdgeML (`edgeml-pytorch` 0.3.0, Microsoft's reference FastRNN/FastGRNN) as a reference to check
against and to benchmark beside prunekit's cells.

`pip install prunekit[edgeml]` (installed with --no-deps: it only needs torch and numpy).
`import_edgeml()` imports it with three compatibility shims, each for a failure of the 0.3.0 wheel
on today's stack, none touching the cells' arithmetic:

- `edgeml_pytorch.graph.rnn` imports a CUDA extension (`fastgrnn_cuda`) whenever a CUDA toolkit
  is installed; it is never built by the wheel, so CUDA detection is switched off;
- `utils.hardThreshold` calls `np.percentile(..., interpolation=...)` (removed in NumPy 2) and
  returns a tensor that requires grad, which `FastTrainer` then passes to `torch.FloatTensor`
  (an error in torch 2): replaced by the same threshold with `method="higher"`;
- `FastTrainer` reads `cell.num_weight_matrices`, which the 0.3.0 cells do not define: set from
  their own `_num_weight_matrices`.

`load_from_edgeml` / `to_edgeml` copy weights between the two layouts (EdgeML's FastGRNNCell keeps
W1 as (rank, d_in) like `nn.Linear`; its FastRNNCell keeps every matrix transposed).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models.fastgrnn import FastCell, FastGRNNCell

_MODULE: types.SimpleNamespace | None = None


def _hard_threshold(A: torch.Tensor, s: float) -> torch.Tensor:
    """EdgeML's `utils.hardThreshold` (in place on a CPU tensor), for NumPy 2 and torch 2."""
    flat = A.data.cpu().detach().numpy().ravel()
    if len(flat) > 0:
        th = np.percentile(np.abs(flat), (1 - s) * 100.0, method="higher")
        flat[np.abs(flat) < th] = 0.0
    return torch.tensor(flat.reshape(A.shape))


def import_edgeml() -> types.SimpleNamespace:
    """Import EdgeML's `rnn` graph module, `utils` and `FastTrainer` (with the shims above).

    Raises:
        PrunekitError: edgeml-pytorch is not installed.
    """
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    try:
        import edgeml_pytorch.utils as utils
    except ImportError:
        raise PrunekitError(
            "edgeml-pytorch is not installed: pip install --no-deps edgeml-pytorch==0.3.0 "
            "(or `make setup`)"
        ) from None
    utils.findCUDA = lambda: None
    utils.hardThreshold = _hard_threshold
    from edgeml_pytorch.graph import rnn
    from edgeml_pytorch.trainer.fastTrainer import FastTrainer

    _MODULE = types.SimpleNamespace(rnn=rnn, utils=utils, FastTrainer=FastTrainer)
    return _MODULE


def edgeml_cell(cell: FastCell) -> nn.Module:
    """A new EdgeML cell of the same shape, nonlinearities and weights as `cell`."""
    rnn = import_edgeml().rnn
    kw: dict[str, Any] = {"wRank": cell.w_rank, "uRank": cell.u_rank}
    if isinstance(cell, FastGRNNCell):
        ref = rnn.FastGRNNCell(
            cell.d_in,
            cell.d_hidden,
            gate_nonlinearity=cell.gate_nl,
            update_nonlinearity=cell.update_nl,
            **kw,
        )
    else:
        ref = rnn.FastRNNCell(cell.d_in, cell.d_hidden, update_nonlinearity=cell.update_nl, **kw)
    ref.num_weight_matrices = ref._num_weight_matrices
    with torch.no_grad():
        for name, value in _edgeml_tensors(cell).items():
            getattr(ref, name).copy_(value)
    return ref


def _matrices(cell: FastCell, which: str) -> dict[str, torch.Tensor]:
    """EdgeML names -> our weights (as EdgeML's FastGRNNCell lays them out: (out, in))."""
    layer = getattr(cell, which)
    key = which.upper()
    if isinstance(layer, nn.Linear):
        return {key: layer.weight}
    return {f"{key}1": layer[0].weight, f"{key}2": layer[1].weight}


def _edgeml_tensors(cell: FastCell) -> dict[str, torch.Tensor]:
    """EdgeML parameter name -> value in EdgeML's shape, for `cell`."""
    mats = {**_matrices(cell, "w"), **_matrices(cell, "u")}
    if isinstance(cell, FastGRNNCell):
        out = {k: v.detach() for k, v in mats.items()}
        for name in ("bias_gate", "bias_update"):
            out[name] = getattr(cell, name).detach().view(1, -1)
        out["zeta"], out["nu"] = cell.zeta.detach().view(1, 1), cell.nu.detach().view(1, 1)
        return out
    out = {k: v.detach().t() for k, v in mats.items()}  # FastRNNCell keeps (in, out)
    out["bias_update"] = cell.bias_update.detach().view(1, -1)
    out["alpha"], out["beta"] = cell.alpha.detach().view(1, 1), cell.beta.detach().view(1, 1)
    return out


@torch.no_grad()
def load_from_edgeml(cell: FastCell, ref: nn.Module) -> FastCell:
    """Copy the weights of an EdgeML cell `ref` into `cell` (same shapes); returns `cell`."""
    transposed = not isinstance(cell, FastGRNNCell)
    for name, ours in {**_matrices(cell, "w"), **_matrices(cell, "u")}.items():
        theirs = getattr(ref, name).detach()
        ours.copy_(theirs.t() if transposed else theirs)
    scalars = ("bias_gate", "bias_update", "zeta", "nu")
    if transposed:
        scalars = ("bias_update", "alpha", "beta")
    for name in scalars:
        getattr(cell, name).copy_(getattr(ref, name).detach().view(-1))
    return cell
