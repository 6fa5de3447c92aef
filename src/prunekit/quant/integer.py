"""Integer-only inference of a byte-quantized FastRNN / FastGRNN classifier (numpy int64 arrays
holding int32 values; no float anywhere in the step). The C reference (`prunekit.quant.c_export`)
runs the same arithmetic and must match it bit for bit.

One FastGRNN step, all values at the activation scale A = 2^act_frac unless said otherwise:

    wx = rq(W2 rq(W1 x, w0), w1)        (or rq(W x, w0) at full rank; x is int16 at 2^in_frac)
    uh = rq(U2 rq(U1 h, u0), u1)        (or rq(U h, u0))
    pre = wx + uh
    z  = clip((pre + rq(b_g, bias) + A) >> 1, 0, A)        quantSigm
    c  = clip(pre + rq(b_h, bias), -A, A)                   quantTanh
    g  = rq(zeta_q (A - z) + nu_q A, scalar)                zeta (1 - z) + nu; zeta_q = 1000 sigmoid
    h  = (z h + g c + A/2) >> act_frac
FastRNN: c as above, h = rq(beta_q h + alpha_q c, scalar). Logits: W_fc h + (b_fc << act_frac)
at scale S_c A (argmax needs no rescale). Every matrix-vector product accumulates in int32:
sum |w| |v| is checked against the int32 range, so no partial sum can overflow in any order.
"""

from __future__ import annotations

import numpy as np

from prunekit.quant.byteq import QuantFastKWS
from prunekit.quant.fixed import check_int32, rq


def _mv(
    mats: list[np.ndarray], v: np.ndarray, mults: list[tuple[int, int]], what: str, check: bool
) -> np.ndarray:
    """Apply int8 factors in order to v (B, d) with a rescale after each: (B, out) int64."""
    for i, (m, (M, n)) in enumerate(zip(mats, mults, strict=False)):
        w = m.astype(np.int64).T  # (in, out)
        if check:
            check_int32(np.abs(v) @ np.abs(w), f"{what}[{i}]")  # bounds every partial sum
        v = rq(v @ w, M, n)  # (B, out)
    return v


def int_step(q: QuantFastKWS, x_t: np.ndarray, h: np.ndarray, check: bool = True) -> np.ndarray:
    """One integer step: x_t (B, d_in) int16, h (B, H) at scale A -> new h (B, H) int64.

    With `check`, raise PrunekitError where the C code's int32 arithmetic could overflow."""
    A = np.int64(1 << q.act_frac)
    m = q.mults
    wx = _mv(q.w, x_t.astype(np.int64), [m["w0"], m["w1"]], "W x", check)
    uh = _mv(q.u, h, [m["u0"], m["u1"]], "U h", check)
    pre = check_int32(wx + uh, "W x + U h")  # (B, H)
    bias = {k: rq(v.astype(np.int64), *m["bias"]) for k, v in q.biases.items()}
    c = np.clip(pre + bias["bias_update"], -A, A)  # quantTanh
    s = q.scalars
    if q.cell == "fastrnn":
        return rq(s["beta"] * h + s["alpha"] * c, *m["scalar"])
    z = np.clip((pre + bias["bias_gate"] + A) >> 1, 0, A)  # quantSigm
    g = rq(s["zeta"] * (A - z) + s["nu"] * A, *m["scalar"])
    return check_int32((z * h + g * c + (A >> 1)) >> np.int64(q.act_frac), "h")


def int_forward(
    q: QuantFastKWS, x: np.ndarray, check: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Run the integer path over int16 inputs x (B, T, d_in) (`check`: see `int_step`).

    Returns:
        logits (B, C) int64 at scale S_c A, and the last state h (B, H) int64 at scale A.
    """
    B, T, _ = x.shape
    h = np.zeros((B, q.d_hidden), dtype=np.int64)
    for t in range(T):
        h = int_step(q, x[:, t], h, check)
    head_w, head_b = q.head_w.astype(np.int64).T, q.head_b.astype(np.int64) << q.act_frac
    if check:
        check_int32(np.abs(h) @ np.abs(head_w) + np.abs(head_b), "logits")
    return h @ head_w + head_b, h  # (B, C), (B, H)


def int_predict(q: QuantFastKWS, x: np.ndarray) -> np.ndarray:
    """Predicted classes (B,) of int16 inputs x (B, T, d_in) by the integer path."""
    return int_forward(q, x)[0].argmax(axis=1)


def dequantize_logits(q: QuantFastKWS, logits: np.ndarray) -> np.ndarray:
    """Integer logits -> the float values they stand for (for error reports only)."""
    return logits / (q.head_scale * float(1 << q.act_frac))
