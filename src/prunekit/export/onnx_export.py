"""ONNX export of full-sequence scoring, `forward(idx (B, T)) -> logits (B, T, V)`.

Exports dense `TransformerLM` / `RNNLM` and copies holding `DenseLinear` / `LowRankLinear` /
`SlicedLinear` / `LowRankEmbedding` (`fastest_dense` and `compact` output included; `onnx_ready`
turns CSR layers back into dense ones first), with dynamic batch and sequence axes (input `idx` int64,
output `logits` fp32). Models prunekit did not build export the same way from an `example` input
(token ids, or features / audio for an acoustic model, first two axes dynamic); their output's
logits are what is exported (a Tensor, the first Tensor of a tuple, or `.logits` as Hugging Face
models return them). Not exportable: `SparseLinear` (no CSR matmul in standard ONNX) and the
dynamic int8 modules (torch's packed int8 kernels have no ONNX form; quantize the exported fp32
graph with onnxruntime's own dynamic quantization instead).

Two exporters:

- "torchscript" (default): torch.onnx's tracing exporter, about a second for a small model; LSTM /
  GRU become ONNX LSTM / GRU ops.
- "dynamo": torch.onnx's torch.export-based exporter (slower, ~10 s per tiny model). Its
  decomposition of `F.scaled_dot_product_attention` with a float mask fails on symbolic shapes
  in torch 2.13 ("Cannot view a tensor ... as a tensor with shape (B, T, H*D)"), so for export
  each `CausalSelfAttention` of the copy runs an identical explicit softmax(q k^T / sqrt(d) + bias) v
  (`_explicit_attend`); `check_onnx` compares against the unmodified model.
"""

from __future__ import annotations

import copy
import math
import types
import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.ao.nn.quantized.dynamic as qd
from torch import Tensor, nn
from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase as DynamicRNNBase

from prunekit.atomic import write_with
from prunekit.errors import PrunekitError
from prunekit.export.layers import DenseLinear, Int8Linear, Int8LowRankLinear, SparseLinear
from prunekit.export.linear_rnn import LinearRNN
from prunekit.export.replace import replace_modules
from prunekit.models.transformer_lm import CausalSelfAttention

Exporter = Literal["torchscript", "dynamo"]


def _explicit_attend(
    self: CausalSelfAttention, q: Tensor, k: Tensor, v: Tensor, bias: Tensor
) -> Tensor:
    """CausalSelfAttention.attend (eval mode) with SDPA written out, for the dynamo exporter."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head) + bias  # (B, H, T, S)
    return torch.softmax(scores, dim=-1) @ v  # (B, H, T, D)


def onnx_ready(model: nn.Module) -> nn.Module:
    """A copy of a compact fp32 model that ONNX can express: each `SparseLinear` as a DenseLinear
    and each `LinearRNN` as the equivalent nn.LSTM / nn.GRU (same math, zeros kept dense)."""

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if isinstance(m, SparseLinear):
            return DenseLinear(m.weight, m.bias)
        if isinstance(m, LinearRNN):
            return m.to_dense_rnn()
        return None

    new = copy.deepcopy(model).eval()
    replace_modules(new, convert)
    return new


def _check_exportable(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, SparseLinear):
            raise PrunekitError(
                f"{name} is a SparseLinear, which ONNX cannot express: export the dense copy "
                "(fastest_dense) instead"
            )
        if isinstance(m, Int8Linear | Int8LowRankLinear | qd.Linear | DynamicRNNBase):
            raise PrunekitError(
                f"{name} is a dynamic int8 module, which has no ONNX form: export the fp32 model "
                "and quantize the ONNX file with onnxruntime.quantization.quantize_dynamic"
            )


def _example(model: nn.Module, batch_size: int, seq_len: int) -> Tensor:
    from prunekit.bench.latency import vocab_size_of

    g = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size_of(model), (batch_size, seq_len), generator=g)


def logits_only(output: object) -> Tensor:
    """The logits of a model output: a Tensor, the first Tensor of a tuple, or `.logits`."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    raise PrunekitError(
        f"cannot find logits in a model output of type {type(output).__name__}: wrap the model "
        "so that forward returns the logits tensor"
    )


class _Logits(nn.Module):
    """`model(x)`'s logits only (what the ONNX graph outputs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return logits_only(self.model(x))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    seq_len: int = 8,
    batch_size: int = 2,
    exporter: Exporter = "torchscript",
    opset: int | None = None,
    example: Tensor | None = None,
    input_name: str = "idx",
) -> Path:
    """Write `model`'s full-sequence forward to an ONNX file, atomically.

    Args:
        model: an fp32 model `forward(x (B, T, ...)) -> logits (B, T, V)` (or an output holding
            them; not modified).
        path: the .onnx file to write.
        seq_len: length of the example token ids traced (the sequence axis stays dynamic).
        batch_size: batch of the example input (the batch axis stays dynamic).
        exporter: "torchscript" or "dynamo" (see the module docstring).
        opset: ONNX opset; default 17 for torchscript, the exporter's default for dynamo.
        example: the example input to trace (e.g. features (B, T, F) of an acoustic model);
            default: random token ids (batch_size, seq_len).
        input_name: the graph input's name.

    Returns:
        The written path. Graph input `input_name` ([batch, seq, ...]), output "logits".

    Raises:
        PrunekitError: a module that cannot be exported, or an unknown exporter.
    """
    if exporter not in ("torchscript", "dynamo"):
        raise PrunekitError(f"exporter={exporter!r} is unknown: use 'torchscript' or 'dynamo'")
    _check_exportable(model)
    m = _Logits(copy.deepcopy(model).eval()).eval()
    idx = _example(m.model, batch_size, seq_len) if example is None else example
    path = Path(path)
    axes = {input_name: {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}

    def write_torchscript(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The RNN initial state is built from the input's shape at run time, so other batch
            # sizes work (checked by the tests); the exporter warns regardless.
            warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
            torch.onnx.export(
                m,
                (idx,),
                str(tmp),
                input_names=[input_name],
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset or 17,
                dynamo=False,
            )

    def write_dynamo(tmp: Path) -> None:
        for mod in m.modules():
            if isinstance(mod, CausalSelfAttention):
                mod.attend = types.MethodType(_explicit_attend, mod)
        dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
        program = torch.onnx.export(
            m,
            (idx,),
            input_names=[input_name],
            output_names=["logits"],
            dynamic_shapes={"x": dims},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
        program.save(str(tmp), external_data=False)

    with torch.no_grad():
        write_with(path, write_torchscript if exporter == "torchscript" else write_dynamo)
    return path


def onnx_logits(path: str | Path, idx: Tensor, input_name: str = "idx") -> Tensor:
    """Run the exported file on idx (B, T, ...) with onnxruntime (CPU); logits (B, T, V).

    Token ids (an integer idx) are fed as int64, anything else as it is.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = idx if idx.is_floating_point() else idx.to(torch.int64)
    (logits,) = session.run(["logits"], {input_name: x.numpy()})
    return torch.from_numpy(logits)


def check_onnx(model: nn.Module, path: str | Path, idx: Tensor, input_name: str = "idx") -> float:
    """Max absolute difference between onnxruntime's logits of `path` and `model(idx)`'s.

    Args:
        model: the torch model that was exported (run in eval mode, then restored).
        path: its ONNX file.
        idx: its input, e.g. token ids (B, T), any batch and length.
        input_name: the graph input's name.

    Returns:
        max |onnx - torch| over all logits.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref = logits_only(model(idx))
    finally:
        model.train(was_training)
    return float((onnx_logits(path, idx, input_name) - ref.float()).abs().max())
