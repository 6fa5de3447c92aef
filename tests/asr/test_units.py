import pytest

from prunekit.asr.units import BLANK, CharUnits
from prunekit.data.spoken import number_words, spoken_form, spoken_lines
from prunekit.errors import PrunekitError


def test_spoken_form_lowercases_drops_punctuation_and_spells_numbers():
    assert spoken_form("O Romeo, Romeo! wherefore art thou?") == "o romeo romeo wherefore art thou"
    assert spoken_form("'Tis the king's son — well-met; 'twas 42.") == (
        "tis the king's son well met twas forty two"
    )
    assert spoken_form('[He dies.] "So"') == "he dies so"
    assert number_words(1000) == "one thousand" and number_words(115) == "one hundred fifteen"


def test_spoken_lines_drops_empty_lines():
    assert spoken_lines("A, b.\n--\n\nC!") == "a b\nc"


def test_units_round_trip_and_collapse():
    u = CharUnits()
    assert u.size == 29 and BLANK == 0
    ids = u.encode("it's a b")
    assert BLANK not in ids and u.decode(ids) == "it's a b"
    a, space = u.encode("a")[0], u.space_id
    assert u.collapse([a, a, BLANK, a, space, space, BLANK, a]) == "aa a"


def test_units_reject_a_character_they_cannot_emit():
    with pytest.raises(PrunekitError, match="cannot emit.*spoken_form"):
        CharUnits().encode("Hello")
