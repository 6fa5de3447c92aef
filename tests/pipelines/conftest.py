import pytest
from asr_run_helpers import write_recipe

from prunekit.cli.main import main


@pytest.fixture(scope="session")
def asr_run(tmp_path_factory, tiny_corpus):
    """(recipe path, run folder) of a finished tiny `prunekit asr` run."""
    tmp = tmp_path_factory.mktemp("asr")
    recipe = write_recipe(tmp, tiny_corpus)
    out = tmp / "run"
    assert main(["asr", "--recipe", str(recipe), "--out", str(out), "--no-progress"]) == 0
    return recipe, out
