"""`load_lm`: dense checkpoints, pruned checkpoints (masks re-attached) and export folders, each
with its tokenizer, score the same words as the model they came from."""

import pytest
import torch
from asr_helpers import domain_sentences, word_tokenizer

from prunekit.asr.lm_scorer import ROOT, WordLM
from prunekit.asr.load_lm import load_lm
from prunekit.errors import PrunekitError
from prunekit.export.compact import compact
from prunekit.export.io import save_compact
from prunekit.models import TransformerLM, TransformerLMConfig
from prunekit.models.registry import model_config
from prunekit.prune import OneShot, PruneConfig, Pruner
from prunekit.train.checkpoint import save_checkpoint

CFG = {"d_model": 32, "n_layer": 1, "n_head": 2, "d_ff": 64, "dropout": 0.0, "max_rel_pos": 8}


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer(domain_sentences(100))


def _model(tok) -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerLMConfig(vocab_size=tok.vocab_size, **CFG)
    return TransformerLM(cfg).eval()


def _score(model, tok) -> float:
    lm = WordLM(model, tok)
    ((node, s1),) = lm.score_words([(ROOT, "the")])
    ((_, s2),) = lm.score_words([(node, "cat")])
    return s1 + s2


def test_dense_checkpoint_with_tokenizer_in_the_run_folder(tok, tmp_path):
    model = _model(tok)
    ckpt = tmp_path / "run" / "checkpoints" / "best"
    save_checkpoint(ckpt, model, {"model_config": model_config(model)})
    tok.save(tmp_path / "run" / "tokenizer.model")
    loaded = load_lm(ckpt)
    assert loaded.kind == "checkpoint" and not loaded.model.training
    assert _score(loaded.model, loaded.tokenizer) == pytest.approx(_score(model, tok), abs=1e-5)


def test_pruned_checkpoint_keeps_its_masks(tok, tmp_path):
    model = _model(tok)
    pcfg = PruneConfig(method="unstructured", schedule=OneShot(sparsity=0.5))
    pruner = Pruner(model, pcfg).attach()
    pruner.prune_now(0.5)
    pruner.remove_hooks()
    ckpt = tmp_path / "prune" / "size-1" / "checkpoints" / "last"
    save_checkpoint(ckpt, model, {"model_config": model_config(model),
                                  "run": {"prune": pcfg.to_dict()}})  # fmt: skip
    tok.save(tmp_path / "baseline" / "tokenizer.model")  # where `prunekit run` keeps it
    loaded = load_lm(ckpt)
    assert loaded.kind == "pruned checkpoint"
    w = loaded.model.blocks[0].ffn.fc_in.weight
    assert float((w == 0).float().mean()) == pytest.approx(0.5, abs=0.05)
    assert _score(loaded.model, loaded.tokenizer) == pytest.approx(_score(model, tok), abs=1e-5)


def test_export_folder_and_explicit_tokenizer(tok, tmp_path):
    model = _model(tok)
    small, manifest = compact(model, dense=True, repeats=1)
    save_compact(small, manifest, tmp_path / "export")
    with pytest.raises(PrunekitError) as err:
        load_lm(tmp_path / "export")
    assert str(err.value) == (
        f"{tmp_path / 'export'} holds no tokenizer.model (it was written by an older prunekit) "
        "and none was found in its parent folders: pass the run's tokenizer.model with "
        "--lm-tokenizer (or lm.tokenizer in a recipe)"
    )
    tok.save(tmp_path / "tok.json")
    loaded = load_lm(tmp_path / "export", tmp_path / "tok.json")
    assert loaded.kind == "export"
    assert _score(loaded.model, loaded.tokenizer) == pytest.approx(_score(model, tok), abs=1e-4)


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(
        PrunekitError, match="does not exist or is not a folder: pass a checkpoint folder"
    ):
        load_lm(tmp_path / "nope")
    with pytest.raises(PrunekitError, match="is not a prunekit checkpoint .* or export"):
        load_lm(tmp_path)
