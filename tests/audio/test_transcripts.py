import pytest

from prunekit.audio.transcripts import synth_text, utterance_texts
from prunekit.data import load_corpus
from prunekit.data.spoken import spoken_form


def test_synth_text_keeps_prosody_and_spells_numbers_like_the_label():
    assert synth_text("O Romeo, Romeo! 'Tis act 2-3.") == "o romeo, romeo! 'tis act two three."
    assert (
        synth_text("(14:24) Now, in 1,603 [years]")
        == "one thousand four hundred twenty four now, in one thousand six hundred three years"
    )
    for raw in ("(14:24) Now, in 1,603 [years]", 'Adoni-bezek said, "Seventy kings"', "K. Hen. V."):
        assert spoken_form(synth_text(raw)) == spoken_form(raw)


@pytest.mark.parametrize("name", ["shakespeare", "web-bible"])
def test_every_utterance_is_said_as_labelled(name):
    text = load_corpus(name).valid
    utts = utterance_texts(text, 8, 30)
    assert len(utts) > 1000
    assert all(spoken_form(synth_text(u)) == spoken_form(u) for u in utts)
    counts = [len(spoken_form(u).split()) for u in utts]
    assert max(counts) <= 31 and sum(c >= 8 for c in counts) > 0.97 * len(counts)


def test_short_lines_join_at_clause_ends_and_long_lines_split_at_punctuation():
    text = (
        "Now is the winter\nof our discontent.\nShort.\n\nOne two three four five six seven eight."
    )
    assert utterance_texts(text, 5, 20) == [
        "Now is the winter of our discontent.",
        "Short. One two three four five six seven eight.",
    ]
    long = "a b c d e, f g h i j; k l m n o p q r s t u v w x"
    assert utterance_texts(long, 2, 10) == [
        "a b c d e, f g h i j;",
        "k l m n o p q r s t",
        "u v w x",
    ]
    with pytest.raises(ValueError, match="min_words <= max_words"):
        utterance_texts("x", 5, 4)
