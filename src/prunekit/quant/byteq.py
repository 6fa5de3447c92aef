"""Byte quantization of a FastRNN / FastGRNN keyword classifier (seed 002's "Q").

Weights follow EdgeML's `quantizeFastModels.py`: one integer scale for every W, U and bias,
S_p = round((2 * 127 + 1) / (2 max |param|)); a float scale for the classifier,
S_c = (2 * 127 + 1) / (2 max |FC|); values rounded (half to even, as numpy) and clipped to
[-128, 127]; the scalars zeta, nu (or alpha, beta) stored as round(1000 sigmoid(.)).

For integer-only inference (`prunekit.quant.integer`) the activations are fixed point with
`act_frac` fraction bits (A = 2^act_frac stands for 1.0) and the input with `in_frac` bits, and
every change of scale is an (M, n) multiplier from `prunekit.quant.fixed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.models.fastgrnn import FastGRNNCell, FastRNNCell, FastRNNLayer
from prunekit.models.kws import KWSClassifier
from prunekit.quant.fixed import multiplier

MAX_VALUE = 127
SCALAR_SCALE = 1000
INPUT_LIMIT = 32767  # inputs are int16


@dataclass
class QuantFastKWS:
    """A byte-quantized fast-cell keyword classifier (all arrays numpy, weights (out, in)).

    Attributes:
        cell: "fastgrnn" or "fastrnn".
        w, u: int8 factors applied in order: [W] or [W1 (r, d_in), W2 (H, r)] (likewise U).
        biases: int8 (H,) by name ("bias_gate", "bias_update"; FastRNN has only the latter).
        scalars: round(1000 sigmoid(.)) of zeta, nu (FastGRNN) or alpha, beta (FastRNN).
        head_w (int8 (C, H)), head_b (int8 (C,)): the classifier at scale head_scale.
        param_scale: S_p of every W, U and bias; head_scale: S_c.
        act_frac / in_frac: fraction bits of activations and of the int16 input.
        mults: name -> (M, n) rescaling multipliers (see `_multipliers`).
    """

    cell: str
    w: list[np.ndarray]
    u: list[np.ndarray]
    biases: dict[str, np.ndarray]
    scalars: dict[str, int]
    head_w: np.ndarray
    head_b: np.ndarray
    param_scale: int
    head_scale: float
    act_frac: int
    in_frac: int
    mults: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def d_in(self) -> int:
        return int(self.w[0].shape[1])

    @property
    def d_hidden(self) -> int:
        return int(self.u[-1].shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.head_w.shape[0])

    def quantize_input(self, x: Tensor | np.ndarray) -> np.ndarray:
        """Float features (..., d_in) -> int16 fixed point with `in_frac` bits (clipped)."""
        x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
        q = np.round(x * 2.0**self.in_frac)
        return np.clip(q, -INPUT_LIMIT - 1, INPUT_LIMIT).astype(np.int16)


def edgeml_round(values: np.ndarray, scale: float) -> np.ndarray:
    """EdgeML's rounding: round(scale * v), > 127 -> 127, < -127 -> -128, as int8."""
    q = np.round(scale * values)
    q[q > MAX_VALUE] = MAX_VALUE
    q[q < -MAX_VALUE] = -(MAX_VALUE + 1)
    return q.astype(np.int8)


def _factors(layer: nn.Module) -> list[np.ndarray]:
    mods = [layer] if isinstance(layer, nn.Linear) else list(layer)
    return [m.weight.detach().cpu().double().numpy() for m in mods]


def _cell_of(model: nn.Module) -> FastGRNNCell | FastRNNCell:
    rnn = getattr(model, "rnn", None)
    if not isinstance(model, KWSClassifier) or not isinstance(rnn, FastRNNLayer):
        raise PrunekitError(
            f"byte quantization needs a KWSClassifier with a fastgrnn or fastrnn cell, got "
            f"{type(model).__name__}: build it with KWSConfig(cell='fastgrnn')"
        )
    cell = rnn.cell
    nls = (getattr(cell, "gate_nl", "quantSigm"), cell.update_nl)
    if nls != ("quantSigm", "quantTanh") and not (
        isinstance(cell, FastRNNCell) and cell.update_nl == "quantTanh"
    ):
        raise PrunekitError(
            f"integer inference needs gate_nl='quantSigm' and update_nl='quantTanh' (got "
            f"{nls[0]!r}, {nls[1]!r}): train the model with them (seed 002's FastGRNN-Q)"
        )
    return cell


def input_frac(x_calib: Tensor, act_frac: int) -> int:
    """Fraction bits for int16 inputs: the most that keep max |x| <= 32767, at most act_frac."""
    peak = float(x_calib.abs().max()) if x_calib.numel() else 0.0
    if not math.isfinite(peak) or peak > INPUT_LIMIT:
        raise PrunekitError(
            f"calibration features reach |x| = {peak:.4g}, beyond int16 inputs: normalize "
            "the features (e.g. per-channel mean/std) before quantizing"
        )
    if peak == 0.0:
        return act_frac
    return max(0, min(act_frac, math.floor(math.log2(INPUT_LIMIT / peak))))


def quantize_kws(model: KWSClassifier, x_calib: Tensor, act_frac: int = 12) -> QuantFastKWS:
    """Byte-quantize a fast-cell `KWSClassifier` (EdgeML's scheme) for integer inference.

    Args:
        model: trained with quantSigm / quantTanh (masks may be attached; the masked weights
            are used).
        x_calib: (N, T, d_in) features whose range sets the input's fraction bits.
        act_frac: fraction bits of activations (1.0 = 2^act_frac).

    Raises:
        PrunekitError: another model or nonlinearity, inputs beyond int16, or bad act_frac.
    """
    if not 4 <= act_frac <= 14:
        raise PrunekitError(f"act_frac={act_frac} must be in [4, 14]: e.g. act_frac=12")
    cell = _cell_of(model)
    w, u = _factors(cell.w), _factors(cell.u)
    names = ["bias_gate", "bias_update"] if isinstance(cell, FastGRNNCell) else ["bias_update"]
    biases = {n: getattr(cell, n).detach().cpu().double().numpy() for n in names}
    limit = max(float(np.abs(a).max()) for a in [*w, *u, *biases.values()])
    param_scale = round((2.0 * MAX_VALUE + 1.0) / (2.0 * limit))
    if param_scale < 1:
        raise PrunekitError(f"weights reach |w| = {limit:.4g}: too large for byte quantization")
    head_w = model.head.weight.detach().cpu().double().numpy()
    head_b = model.head.bias.detach().cpu().double().numpy()
    head_scale = (2.0 * MAX_VALUE + 1.0) / (2.0 * max(np.abs(head_w).max(), np.abs(head_b).max()))
    scalar_names = ("zeta", "nu") if isinstance(cell, FastGRNNCell) else ("alpha", "beta")
    scalars = {
        n: round(SCALAR_SCALE * float(torch.sigmoid(getattr(cell, n).detach()).item()))
        for n in scalar_names
    }
    q = QuantFastKWS(
        cell="fastgrnn" if isinstance(cell, FastGRNNCell) else "fastrnn",
        w=[edgeml_round(a, param_scale) for a in w],
        u=[edgeml_round(a, param_scale) for a in u],
        biases={n: edgeml_round(a, param_scale) for n, a in biases.items()},
        scalars=scalars,
        head_w=edgeml_round(head_w, head_scale),
        head_b=edgeml_round(head_b, head_scale),
        param_scale=int(param_scale),
        head_scale=float(head_scale),
        act_frac=act_frac,
        in_frac=input_frac(x_calib, act_frac),
    )
    q.mults = _multipliers(q)
    return q


def _multipliers(q: QuantFastKWS) -> dict[str, tuple[int, int]]:
    """(M, n) of every rescale: each product lands at the activation scale A = 2^act_frac.

    w0: W (or W1) x, from S_p 2^in_frac; w1: W2 t and u0, u1: U h, from S_p A; bias: from S_p;
    scalar: from 1000 (the scalars' scale).
    """
    A, S = 2.0**q.act_frac, float(q.param_scale)
    return {
        "w0": multiplier(A / (S * 2.0**q.in_frac)),
        "w1": multiplier(1.0 / S),
        "u0": multiplier(1.0 / S),
        "u1": multiplier(1.0 / S),
        "bias": multiplier(A / S),
        "scalar": multiplier(1.0 / SCALAR_SCALE),
    }


@torch.no_grad()
def dequantized(model: KWSClassifier, q: QuantFastKWS) -> KWSClassifier:
    """A float copy of `model` whose weights are the quantized values / their scales.

    The integer path differs from it only by activation rounding; it differs from `model` only by
    weight rounding. Masks of `model` are not copied (the weights already hold the zeros).
    """
    from prunekit.models.kws import KWSConfig  # local: the config is all that is needed

    ref = KWSClassifier(KWSConfig(**model.config.to_dict()))
    cell = ref.rnn.cell
    S = float(q.param_scale)
    for layer, mats in ((cell.w, q.w), (cell.u, q.u)):
        mods = [layer] if isinstance(layer, nn.Linear) else list(layer)
        for m, a in zip(mods, mats, strict=True):
            m.weight.copy_(torch.from_numpy(a.astype(np.float64) / S))
    for name, a in q.biases.items():
        getattr(cell, name).copy_(torch.from_numpy(a.astype(np.float64) / S))
    for name, v in q.scalars.items():
        p = min(max(v / SCALAR_SCALE, 1e-6), 1 - 1e-6)
        getattr(cell, name).fill_(math.log(p / (1 - p)))  # sigmoid^-1
    ref.head.weight.copy_(torch.from_numpy(q.head_w.astype(np.float64) / q.head_scale))
    ref.head.bias.copy_(torch.from_numpy(q.head_b.astype(np.float64) / q.head_scale))
    return ref
