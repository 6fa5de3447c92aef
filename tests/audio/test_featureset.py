import pytest
import torch

from prunekit.audio.featureset import FeatureSet
from prunekit.errors import PrunekitError


def _set():
    feats = [torch.randn(5, 3), torch.randn(2, 3), torch.randn(7, 3)]
    return FeatureSet.from_list(feats, ["a b", "c", "d e f"], ["u1", "u2", "u3"], ["v", "v", "w"])


def test_items_lengths_and_subset():
    fs = _set()
    assert len(fs) == 3
    assert fs.lengths.tolist() == [5, 2, 7]
    assert fs[1].shape == (2, 3)
    sub = fs.subset([2, 0])
    assert sub.texts == ["d e f", "a b"] and torch.equal(sub[1], fs[0])


def test_save_load_round_trip(tmp_path):
    fs = _set()
    fs.meta = {"n_mels": 3}
    fs.save(tmp_path / "train.safetensors")
    back = FeatureSet.load(tmp_path / "train.safetensors")
    assert (
        torch.equal(back.feats, fs.feats) and back.texts == fs.texts and back.meta == {"n_mels": 3}
    )


def test_corrupt_file_is_one_clear_error(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"garbage")
    with pytest.raises(PrunekitError, match="missing or corrupt"):
        FeatureSet.load(tmp_path / "x.safetensors")
