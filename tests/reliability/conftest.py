import pytest

from prunekit.config import parse_recipe
from prunekit.pipelines.lm_baseline import train_baseline


@pytest.fixture(scope="session")
def tiny_baseline(tiny_corpus, tiny_recipe, tmp_path_factory):
    """(recipe dict, best checkpoint) of a tiny trained Transformer (dropout 0.1)."""
    recipe = tiny_recipe(tiny_corpus, steps=6, eval_every=6)
    out = tmp_path_factory.mktemp("reliability-baseline")
    train_baseline(parse_recipe(recipe), out, progress=False)
    return recipe, out / "checkpoints" / "best"
