import pytest

from prunekit.data import Corpus, load_shakespeare


@pytest.fixture(scope="session")
def shakespeare() -> Corpus:
    """The default corpus, loaded once per test process."""
    return load_shakespeare()
