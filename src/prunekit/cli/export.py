"""`prunekit export`: a pruned checkpoint as a compact model folder (safetensors + JSON manifest).

Structured pruning becomes physically smaller layers, factorized layers two thin matmuls, and
unstructured layers CSR where a timing on this CPU at --batch-size rows and --threads threads says
CSR beats dense (dense otherwise); --int8 adds dynamic int8. Load the folder with
`prunekit.export.load_compact(folder)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.cli.common import check_out_dir
from prunekit.export.compact import compact, summarize
from prunekit.export.int8_choice import quantize_compact
from prunekit.export.io import save_compact
from prunekit.export.onnx_export import check_onnx, export_onnx, onnx_ready
from prunekit.pipelines.lm_artifact import TOKENIZER_FILE, load_lm_checkpoint, resolve_checkpoint
from prunekit.prune import PruneConfig
from prunekit.train.checkpoint import read_checkpoint_state


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a pruned checkpoint as a compact, faster model", description=__doc__
    )
    p.add_argument("checkpoint", help="checkpoint folder of a pruned run (or a dense one: --dense)")
    p.add_argument("--out", required=True, help="export folder (weights.safetensors + manifest)")
    p.add_argument("--int8", action="store_true", help="also quantize to dynamic int8")
    p.add_argument(
        "--int8-policy", choices=("all", "fastest"), default="all",
        help="int8 for every layer (all) or only where measured faster (fastest)",
    )  # fmt: skip
    p.add_argument(
        "--dense", action="store_true", help="accept a never-pruned model (the dense baseline)"
    )
    p.add_argument("--batch-size", type=int, default=1, help="rows per call to tune for (1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads to tune for (1)")
    p.add_argument("--repeats", type=int, default=20, help="timing samples per choice (20)")
    p.add_argument(
        "--sparse", choices=("auto", "dense", "csr"), default="auto",
        help="CSR where measured faster (auto), never (dense) or always (csr)",
    )  # fmt: skip
    p.add_argument("--onnx", action="store_true", help="also write and check model.onnx (fp32)")
    p.set_defaults(func=run)


def load_pruned(path: Path) -> tuple[nn.Module, PruneConfig | None]:
    """Rebuild a checkpoint's model with its masks / factorized layers attached, and its config.

    Raises:
        PrunekitError: not a checkpoint, or weights that do not fit the recorded config.
    """
    model = load_lm_checkpoint(path)
    raw = (read_checkpoint_state(path)["state"].get("run") or {}).get("prune")
    return model.eval(), PruneConfig.from_dict(raw) if raw else None


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def export_summary(manifest: dict[str, Any], out: Path) -> str:
    """Human-readable lines: sizes and FLOPs vs dense, kept structure, ranks, per-layer choices."""
    s = manifest["summary"]
    lines = [f"exported to {out}"]
    line = f"  params {s['params']:,}  bytes {_mb(s['size_bytes'])}"
    line += f"  FLOPs/token {s['flops_per_token']:,} (context {s['flops_context_len']})"
    lines.append(line)
    if "dense_params" in s:
        lines.append(
            f"  dense base: params {s['dense_params']:,}  bytes {_mb(s['dense_size_bytes'])}  "
            f"FLOPs/token {s['dense_flops_per_token']:,}  ->  {s['size_ratio']:.3f}x the bytes, "
            f"{s['flop_ratio']:.2f}x fewer FLOPs"
        )
    kinds: dict[str, int] = {}
    for rec in manifest["layers"].values():
        kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
    lines.append("  layers: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    for r in manifest["structure"]:
        if "skipped" in r:
            lines.append(f"  {r['module']}: {r['kind']} not removed ({r['skipped']})")
        elif r["kind"] == "rnn_units":
            kept = ", ".join(str(len(k)) for row in r["kept"] for k in row)
            lines.append(f"  {r['module']}: hidden units kept {kept} of {r['n']} per layer")
        elif "kept" in r and "n" in r:  # heads, ffn_units, conv_channels, embedding_cols
            lines.append(f"  {r['module']}: {r['kind']} kept {len(r['kept'])}/{r['n']}")
        else:
            lines.append(
                f"  {r['module']}: rows {r['kept_rows']}/{r['shape'][0]}, "
                f"cols {r['kept_cols']}/{r['shape'][1]}"
            )
    for r in manifest["factorized"]:
        lines.append(f"  {r['module']}: rank {r['kept_rank']}/{r['rank']} -> {r['as']}")
    for r in manifest.get("lowrank", []):
        ranks = {k: v.get("rank") for k, v in r.get("matrices", {}).items()} or r.get("rank")
        lines.append(f"  {r['module']}: W = U V (ranks {ranks}) -> {r['as']}")
    for name, r in manifest["choices"].items():
        ratio = f", CSR {r['ratio']:.2f}x dense" if r.get("ratio") else ""
        reason = f"; {r['reason']}" if r.get("reason") else ""
        lines.append(f"  {name}: {r['kind']} (sparsity {r['sparsity']:.2f}{ratio}{reason})")
    for name, r in manifest["int8_choices"].items():
        us = ", ".join(f"{k} {v:.0f} µs" for k, v in r["us"].items())
        lines.append(f"  {name}: int8 choice {r['kind']} ({us})")
    return "\n".join(lines)


def _write_onnx(model: nn.Module, out: Path) -> str:
    fp32 = onnx_ready(model)
    path = export_onnx(fp32, out / "model.onnx", seq_len=8)
    vocab = next(m.num_embeddings for m in fp32.modules() if hasattr(m, "num_embeddings"))
    idx = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0))
    diff = check_onnx(fp32, path, idx)
    return f"  ONNX: {path} (fp32; onnxruntime vs torch max |diff| {diff:.2e})"


def run(args: argparse.Namespace) -> int:
    path, out = resolve_checkpoint(Path(args.checkpoint)), check_out_dir(args.out)
    model, config = load_pruned(path)
    consumers = (config.method_args.get("consumers") if config else None) or None
    opts = {"batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats}
    fp32, manifest = compact(
        model, sparse=args.sparse, consumers=consumers, dense=args.dense, **opts
    )
    run_state = read_checkpoint_state(path)["state"].get("run") or {}
    manifest["source"] = {
        "checkpoint": str(path),
        "prune": config.to_dict() if config else None,
        "recipe": run_state.get("recipe"),
    }
    tokenizer = path / TOKENIZER_FILE  # so the export can be evaluated / decoded on its own
    files = {TOKENIZER_FILE: tokenizer.read_bytes()} if tokenizer.is_file() else {}
    final = fp32
    if args.int8:
        final, manifest["int8_choices"] = quantize_compact(fp32, policy=args.int8_policy, **opts)
        manifest["options"].update(int8=True, int8_policy=args.int8_policy)
        manifest["summary"] = summarize(final, manifest["model_config"])
    written = save_compact(final, manifest, out, files=files)
    print(export_summary(written, out))
    if args.onnx:
        print(_write_onnx(fp32, out))
    return 0
