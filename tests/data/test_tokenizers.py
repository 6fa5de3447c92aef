import pytest
import sentencepiece as spm
import torch

from prunekit.data import (
    SentencePieceTokenizer,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
)
from prunekit.data.tokenizers import count_words, default_cache_dir
from prunekit.errors import PrunekitError


@pytest.fixture(scope="module")
def spm_text(shakespeare) -> str:
    """First 2000 lines of the default train split."""
    return "\n".join(shakespeare.train.splitlines()[:2000]) + "\n"


@pytest.fixture(scope="module")
def spm_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("spm")


@pytest.fixture(scope="module")
def unigram(spm_text, spm_cache) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.train(spm_text, 300, cache_dir=spm_cache)


def _no_training(*args, **kwargs):
    raise AssertionError("sentencepiece trainer called")


# --- sentencepiece ----------------------------------------------------------------------------


def test_sentencepiece_round_trip(unigram, spm_text):
    assert unigram.kind == "sentencepiece"
    assert unigram.vocab_size == 300 and unigram.eos_id == 1
    line = "To be, or not to be: that is the question"
    ids = unigram.encode(line)
    assert ids and all(0 <= i < 300 for i in ids) and unigram.eos_id not in ids
    assert unigram.decode(ids) == line
    stream = unigram.encode_corpus(spm_text)
    assert stream.dtype == torch.int64 and stream.dim() == 1
    assert int((stream == unigram.eos_id).sum()) == 2000 and int(stream[-1]) == 1
    assert unigram.decode(stream.tolist()) == spm_text


def test_sentencepiece_cache_hit(unigram, spm_text, spm_cache, monkeypatch):
    models = list(spm_cache.glob("*.model"))
    assert len(models) == 1 and len(models[0].stem) == 64
    mtime = models[0].stat().st_mtime_ns
    monkeypatch.setattr(spm.SentencePieceTrainer, "train", _no_training)
    again = SentencePieceTokenizer.train(spm_text, 300, cache_dir=spm_cache)
    assert again.encode_corpus(spm_text).equal(unigram.encode_corpus(spm_text))
    assert models[0].stat().st_mtime_ns == mtime
    with pytest.raises(AssertionError, match="trainer called"):  # another vocab: another key
        SentencePieceTokenizer.train(spm_text, 301, cache_dir=spm_cache)


def test_sentencepiece_bpe_is_deterministic(spm_text, tmp_path):
    a = SentencePieceTokenizer.train(spm_text, 300, "bpe", cache_dir=tmp_path / "a")
    b = SentencePieceTokenizer.train(spm_text, 300, "bpe", cache_dir=tmp_path / "b")
    (model_a,) = (tmp_path / "a").glob("*.model")
    (model_b,) = (tmp_path / "b").glob("*.model")
    assert model_a.name == model_b.name
    assert model_a.read_bytes() == model_b.read_bytes()
    line = "Now, fair Hippolyta, our nuptial hour"
    assert a.encode(line) == b.encode(line) and a.decode(a.encode(line)) == line


def test_sentencepiece_vocab_too_large(spm_text, tmp_path):
    small = "\n".join(spm_text.splitlines()[:40])
    with pytest.raises(
        PrunekitError,
        match=r"^vocab_size=5000 is larger than this corpus supports \(max \d+\): "
        r"lower data\.vocab_size$",
    ):
        SentencePieceTokenizer.train(small, 5000, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.model"))


def test_sentencepiece_vocab_too_small(spm_text, tmp_path):
    with pytest.raises(PrunekitError, match=r"vocab_size=10 is smaller than the number of"):
        SentencePieceTokenizer.train(spm_text[:2000], 10, "bpe", cache_dir=tmp_path)


def test_sentencepiece_bad_model_type(tmp_path):
    with pytest.raises(PrunekitError, match=r"model_type='wordpiece' is unknown: use one of"):
        SentencePieceTokenizer.train("a b c\n", 100, "wordpiece", cache_dir=tmp_path)


def test_sentencepiece_save_load(unigram, tmp_path):
    path = tmp_path / "out" / "tok.model"
    unigram.save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, SentencePieceTokenizer)
    line = "Good night, sweet prince"
    assert loaded.encode(line) == unigram.encode(line) and loaded.vocab_size == 300


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "spm"
    monkeypatch.delenv("PRUNEKIT_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "prunekit", "spm")


# --- word -------------------------------------------------------------------------------------


def test_word_vocabulary_order_and_unk():
    tok = WordTokenizer.build("b a c c\n<unk> c b\n\nd <unk>\n")
    assert tok.kind == "word" and tok.eos_id == 1
    assert tok.itos == ["<unk>", "<eos>", "c", "b", "a", "d"]  # freq desc, then a-z
    assert tok.vocab_size == 6
    assert tok.encode("c <unk> zebra a") == [2, 0, 0, 4]
    assert tok.encode_corpus("c zebra\n\n  \nb\n").tolist() == [2, 0, 1, 3, 1]
    assert tok.decode([2, 0, 1, 3, 1]) == "c <unk>\nb\n"


def test_word_vocabulary_limits():
    text = "x x x y y z w\n"
    assert WordTokenizer.build(text, max_vocab=4).itos == ["<unk>", "<eos>", "x", "y"]
    assert WordTokenizer.build(text, min_freq=2).itos == ["<unk>", "<eos>", "x", "y"]
    assert build_tokenizer("word", text, 0).vocab_size == 6
    assert build_tokenizer("word", text, 3).vocab_size == 3
    with pytest.raises(PrunekitError, match=r"vocab_size=2 is too small"):
        WordTokenizer.build(text, max_vocab=2)


def test_word_tokenizer_is_deterministic(shakespeare, tmp_path):
    text = "\n".join(shakespeare.valid.splitlines()[:1000])
    a = WordTokenizer.build(text, max_vocab=500)
    b = WordTokenizer.build(text, max_vocab=500)
    assert a.itos == b.itos and a.vocab_size == 500
    a.save(tmp_path / "w.json")
    loaded = load_tokenizer(tmp_path / "w.json")
    assert isinstance(loaded, WordTokenizer) and loaded.itos == a.itos
    assert loaded.encode_corpus(text).equal(a.encode_corpus(text))


def test_count_words(unigram):
    text = "a b c\n\n  \nd e\n"
    assert count_words(text) == 7  # 5 words + 2 end-of-sentence
    assert WordTokenizer.build(text).count_words(text) == 7
    assert unigram.count_words(text) == 7
    assert count_words("") == 0


# --- dispatch and loading ---------------------------------------------------------------------


def test_build_tokenizer_dispatch(spm_text, spm_cache, monkeypatch):
    monkeypatch.setattr(spm.SentencePieceTrainer, "train", _no_training)
    tok = build_tokenizer("sentencepiece", spm_text, 300, cache_dir=spm_cache)
    assert isinstance(tok, SentencePieceTokenizer)
    assert isinstance(build_tokenizer("word", spm_text, 0), WordTokenizer)
    with pytest.raises(PrunekitError, match=r"tokenizer\.kind='char' is unknown: use one of"):
        build_tokenizer("char", spm_text, 100)


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(PrunekitError, match=r"tokenizer file .*none\.model does not exist"):
        load_tokenizer(tmp_path / "none.model")
    (tmp_path / "junk.model").write_bytes(b"\x00\x01garbage")
    with pytest.raises(PrunekitError, match=r"junk\.model is neither a word tokenizer"):
        load_tokenizer(tmp_path / "junk.model")
    (tmp_path / "other.json").write_text('{"kind": "bpe"}')
    with pytest.raises(PrunekitError, match=r"other\.json is JSON but not a word tokenizer"):
        load_tokenizer(tmp_path / "other.json")


def test_tokenizers_round_trip_through_bytes(unigram):
    from prunekit.data import tokenizer_from_bytes

    word = WordTokenizer.build("to be or not to be\n")
    for tok in (unigram, word):
        again = tokenizer_from_bytes(tok.to_bytes())
        assert (again.kind, again.vocab_size, again.unk_id) == (tok.kind, tok.vocab_size, 0)
        assert again.encode("to be or not") == tok.encode("to be or not")
    with pytest.raises(PrunekitError, match="neither a word tokenizer"):
        tokenizer_from_bytes(b"\x00junk", "x.model")
