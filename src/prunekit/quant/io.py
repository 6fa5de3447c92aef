"""Save / load a `QuantFastKWS`: int8 arrays in one safetensors file, everything else as JSON
metadata in its header (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from prunekit.atomic import write_with
from prunekit.errors import PrunekitError
from prunekit.quant.byteq import QuantFastKWS

FORMAT, VERSION = "prunekit.quant_fast_kws", 1


def save_quantized(q: QuantFastKWS, path: str | Path) -> None:
    """Write `q` to `path` (a .safetensors file), atomically."""
    arrays = {f"w.{i}": a for i, a in enumerate(q.w)} | {f"u.{i}": a for i, a in enumerate(q.u)}
    arrays |= {f"bias.{k}": v for k, v in q.biases.items()}
    arrays |= {"head_w": q.head_w, "head_b": q.head_b}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "cell": q.cell,
        "n_w": len(q.w),
        "n_u": len(q.u),
        "scalars": q.scalars,
        "param_scale": q.param_scale,
        "head_scale": q.head_scale,
        "act_frac": q.act_frac,
        "in_frac": q.in_frac,
        "mults": {k: list(v) for k, v in q.mults.items()},
    }
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    write_with(path, lambda p: save_file(arrays, str(p), metadata={"quant": json.dumps(meta)}))


def load_quantized(path: str | Path) -> QuantFastKWS:
    """Read what `save_quantized` wrote.

    Raises:
        PrunekitError: a missing file, or a file that is not a saved QuantFastKWS.
    """
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(f"{path} does not exist: pass a file written by save_quantized")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("quant", "{}"))
        arrays = load_file(str(path))
    except (SafetensorError, json.JSONDecodeError, OSError) as exc:
        raise PrunekitError(
            f"{path} is not a safetensors file ({exc}): pass one written by save_quantized"
        ) from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PrunekitError(
            f"{path} holds no quantized fast-cell model: pass one written by save_quantized"
        )
    return QuantFastKWS(
        cell=meta["cell"],
        w=[arrays[f"w.{i}"] for i in range(meta["n_w"])],
        u=[arrays[f"u.{i}"] for i in range(meta["n_u"])],
        biases={k[len("bias.") :]: v for k, v in arrays.items() if k.startswith("bias.")},
        scalars={k: int(v) for k, v in meta["scalars"].items()},
        head_w=arrays["head_w"],
        head_b=arrays["head_b"],
        param_scale=int(meta["param_scale"]),
        head_scale=float(meta["head_scale"]),
        act_frac=int(meta["act_frac"]),
        in_frac=int(meta["in_frac"]),
        mults={k: (int(v[0]), int(v[1])) for k, v in meta["mults"].items()},
    )
