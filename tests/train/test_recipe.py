import pytest

from prunekit.config import load_recipe, parse_recipe
from prunekit.errors import PrunekitError
from prunekit.recipes import builtin


def test_builtin_demo_recipe_validates():
    cfg = load_recipe(builtin("demo"))
    assert cfg.model["arch"] == "transformer"
    assert cfg.train.steps > 0


def test_unknown_key_is_named():
    with pytest.raises(PrunekitError) as exc:
        parse_recipe({"train": {"lrr": 0.1}})
    assert str(exc.value) == "recipe key 'train.lrr' is not known: remove it or fix its spelling"


def test_negative_learning_rate_is_rejected():
    with pytest.raises(
        PrunekitError, match=r"recipe key 'train.lr': Input should be greater than 0"
    ):
        parse_recipe({"train": {"lr": -0.1}})


def test_wrong_type_is_named():
    with pytest.raises(PrunekitError, match=r"recipe key 'train.steps'"):
        parse_recipe({"train": {"steps": "many"}})


def test_overrides_apply_dotted_keys():
    cfg = parse_recipe({}, {"train.steps": 7, "data.vocab_size": 300})
    assert (cfg.train.steps, cfg.data.vocab_size) == (7, 300)


def test_missing_and_malformed_recipe_files(tmp_path):
    with pytest.raises(PrunekitError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(PrunekitError, match="is not valid YAML"):
        load_recipe(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(PrunekitError, match="must be a mapping"):
        load_recipe(listy)
