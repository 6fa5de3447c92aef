"""save_compact / load_compact: exact round trips, a readable manifest, and clean rejections."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from compact_helpers import RNN_SCOPE, ids, logits, pruned, tiny_rnn, tiny_transformer
from safetensors.torch import load_file, save_file

from prunekit.errors import PrunekitError
from prunekit.export import load_compact, read_manifest, save_compact
from prunekit.export.compact import compact

FAST = {"repeats": 2}
CASES = {
    "transformer-structured": lambda: pruned(tiny_transformer(), "structured", 0.5),
    "transformer-factorized": lambda: pruned(
        tiny_transformer(tie_embeddings=True), "factorized", 0.6
    ),
    "transformer-csr": lambda: pruned(tiny_transformer(), "unstructured", 0.8),
    "lstm-csr": lambda: pruned(tiny_rnn("lstm"), "unstructured", 0.8, scope=RNN_SCOPE),
    "gru-structured": lambda: pruned(tiny_rnn("gru"), "structured", 0.5, scope=RNN_SCOPE),
}


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_is_exact(tmp_path, case, int8):
    small, manifest = compact(CASES[case](), int8=int8, sparse="csr", **FAST)
    save_compact(small, manifest, tmp_path / "export")
    loaded = load_compact(tmp_path / "export")
    assert type(loaded) is type(small)
    assert [type(m) for m in loaded.modules()] == [type(m) for m in small.modules()]
    idx = ids((3, 5))
    assert torch.equal(logits(loaded, idx), logits(small, idx))
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "manifest.json",
        "weights.safetensors",
    ]


def test_manifest_records_kinds_indices_ranks_and_quant(tmp_path):
    small, manifest = compact(CASES["transformer-structured"](), int8=True, **FAST)
    written = save_compact(small, manifest, tmp_path / "s")
    assert written == read_manifest(tmp_path / "s")
    heads = next(r for r in written["structure"] if r["module"] == "blocks.1.attn")
    assert heads["kind"] == "heads" and len(heads["kept"]) == 2
    q = written["layers"]["blocks.1.attn.q_proj"]
    assert q["kind"] == "int8" and q["out"] == 8
    assert q["quant"] == {"dtype": "qint8", "scheme": "per_channel_affine", "axis": 0}
    assert written["tensors"]["blocks.1.attn.q_proj.qweight"] == {"shape": [8, 16], "dtype": "int8"}
    assert written["tensors"]["blocks.1.attn.q_proj.scales"]["dtype"] == "float64"
    small, manifest = compact(CASES["transformer-factorized"](), **FAST)
    written = save_compact(small, manifest, tmp_path / "f")
    head = written["layers"]["lm_head"]
    rank = next(r["kept_rank"] for r in written["factorized"] if r["module"] == "lm_head")
    assert head["kind"] == "lowrank" and head["rank"] == rank
    assert written["layers"]["embed"] == {  # tied: reads lm_head's factors, stores none
        "kind": "tied_embedding", "num": 23, "dim": 16, "transposed": True, "padding_idx": None,
        "table": "lm_head.U_t", "proj": "lm_head.V_t",
        "shapes": {"table": [rank, 23], "proj": [16, rank]},
    }  # fmt: skip
    assert "embed.table" not in written["tensors"] and "lm_head.U_t" in written["tensors"]
    loaded = load_compact(tmp_path / "f")
    assert loaded.embed.table is loaded.lm_head.U_t  # still stored once after loading


@pytest.fixture
def export(tmp_path) -> Path:
    small, manifest = compact(CASES["transformer-structured"](), dense_layout="transposed", **FAST)
    folder = tmp_path / "export"
    save_compact(small, manifest, folder)
    return folder


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _rejected(folder: Path) -> str:
    with pytest.raises(PrunekitError) as exc:
        load_compact(folder)
    return str(exc.value)


MISMATCH = "the manifest does not match its weights; re-export the model"


def test_manifest_listing_a_missing_tensor_is_rejected(export):
    _edit_manifest(
        export, lambda m: m["tensors"].update({"extra.w": {"shape": [1], "dtype": "float32"}})
    )
    assert _rejected(export) == (
        f"manifest.json lists tensor 'extra.w' but weights.safetensors does not have it: {MISMATCH}"
    )


def test_layer_shape_that_does_not_fit_the_weights_is_rejected(export):
    _edit_manifest(export, lambda m: m["layers"]["blocks.0.ffn.fc_in"].update(out=999))
    assert _rejected(export) == (
        "tensor 'blocks.0.ffn.fc_in.weight_t' is {'shape': [16, 16], 'dtype': 'float32'} in "
        "weights.safetensors but {'shape': [16, 999], 'dtype': 'float32'} in layer "
        f"'blocks.0.ffn.fc_in' of manifest.json: {MISMATCH}"
    )


def test_weights_missing_a_layer_tensor_are_rejected(export):
    path = export / "weights.safetensors"
    tensors = load_file(str(path))
    del tensors["blocks.0.ffn.fc_in.bias"]
    save_file(tensors, str(path))

    def edit(m):
        del m["tensors"]["blocks.0.ffn.fc_in.bias"]
        m["weights"]["bytes"] = path.stat().st_size

    _edit_manifest(export, edit)
    message = _rejected(export)
    assert message.endswith("(sha256 differs): " + MISMATCH)
    with pytest.raises(PrunekitError) as exc:
        load_compact(export, verify=False)
    assert str(exc.value) == (
        "layer 'blocks.0.ffn.fc_in' (dense) needs tensor 'blocks.0.ffn.fc_in.bias', which "
        f"weights.safetensors does not have: {MISMATCH}"
    )


def test_corrupt_csr_indices_are_rejected(tmp_path):
    small, manifest = compact(CASES["transformer-csr"](), sparse="csr", **FAST)
    folder = tmp_path / "csr"
    save_compact(small, manifest, folder)
    path = folder / "weights.safetensors"
    tensors = load_file(str(path))
    tensors["lm_head.col_indices"][0] = 10_000
    save_file(tensors, str(path))
    _edit_manifest(folder, lambda m: m["weights"].update(bytes=path.stat().st_size))
    with pytest.raises(PrunekitError) as exc:
        load_compact(folder, verify=False)
    assert str(exc.value) == (
        "the CSR indices in the weights file are not a valid (out, in) sparse matrix: the file "
        "is corrupt; re-export the model"
    )


def test_weights_of_another_export_are_rejected(export, tmp_path):
    small, manifest = compact(CASES["transformer-csr"](), **FAST)
    save_compact(small, manifest, tmp_path / "other")
    other = (tmp_path / "other" / "weights.safetensors").read_bytes()
    (export / "weights.safetensors").write_bytes(other)
    _edit_manifest(export, lambda m: m["weights"].update(bytes=len(other)))
    assert _rejected(export) == (
        f"{export / 'weights.safetensors'} does not match manifest.json (sha256 differs): {MISMATCH}"
    )


def test_truncated_weights_are_rejected(export):
    path = export / "weights.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _rejected(export) == (
        f"{path} has {len(data) // 2} bytes but manifest.json says {len(data)}: the file is "
        "truncated or was replaced; re-export the model"
    )


def test_missing_or_foreign_manifest_is_rejected(export, tmp_path):
    assert _rejected(tmp_path) == (
        f"{tmp_path} is not a compact export (no manifest.json): pass a folder written by "
        "`prunekit export`"
    )
    _edit_manifest(export, lambda m: m.update(format_version=99))
    assert _rejected(export) == (
        f"{export / 'manifest.json'} has format 'prunekit-compact' version 99, expected "
        "'prunekit-compact' version 1: re-export the model with this prunekit version"
    )


def test_saving_refuses_foreign_folders_and_uncompacted_models(export, tmp_path):
    (export / "notes.txt").write_text("mine")
    small = load_compact(export)
    with pytest.raises(PrunekitError, match="refusing to replace .* other files"):
        save_compact(small, None, export)
    assert (export / "notes.txt").read_text() == "mine"
    with pytest.raises(PrunekitError) as exc:
        save_compact(pruned(tiny_transformer(), "factorized", 0.5), None, tmp_path / "masked")
    assert str(exc.value) == (
        "cannot save 'embed.U' [23, 16]: module 'embed' is neither a compact layer nor as in the base model; export models made by "
        "prunekit.export.compact"
    )
    assert not (tmp_path / "masked").exists()


def _prunekit_imports(module: str) -> set[str]:
    """prunekit modules `module` imports, transitively (package __init__ files included)."""
    import ast
    import importlib.util

    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [
            ".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen
        ]
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        tree = ast.parse(Path(spec.origin).read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            todo += [n for n in names if n.startswith("prunekit") and _is_module(n)]
    return seen


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, AttributeError, ValueError):
        return False


def test_load_path_imports_no_pruning_code():
    modules = _prunekit_imports("prunekit.export.io")
    assert "prunekit.export.records" in modules
    assert not [m for m in modules if m.startswith("prunekit.prune")]


@pytest.mark.slow
def test_loading_needs_no_pruning_code(export):
    code = (
        "import sys; from prunekit.export import load_compact; import torch\n"
        f"m = load_compact({str(export)!r}); m(torch.zeros(1, 3, dtype=torch.long))\n"
        "assert not [k for k in sys.modules if k.startswith('prunekit.prune')], 'pruning code'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
