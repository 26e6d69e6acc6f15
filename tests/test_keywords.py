"""Keywords as readers type them: parsing a /follow argument and the stored form.

The word rules themselves (folding, tokens, plurals) are tested in test_words.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.keywords import (
    MAX_KEYWORD_LEN,
    MIN_KEYWORD_LEN,
    KeywordError,
    normalise_keyword,
    parse_keywords,
)
from storage.words import keyword_stems

# --- normalise_keyword --------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("drones", "drones"),
        ("  Drones  ", "drones"),
        ("North  Korea", "north korea"),
        ("north\tkorea\n", "north korea"),
        ("Malmö", "malmo"),
        ("MALMÖ", "malmo"),
        ("São Paulo", "sao paulo"),
        ("Łódź", "lodz"),
        ("Ærøskøbing", "aeroskobing"),
        ("Straße", "strasse"),
        ("Þórshöfn", "thorshofn"),
        ("İstanbul", "istanbul"),
        ("C++", "c++"),
        ("C#", "c#"),
        ("F-16", "f-16"),
        ("#MeToo", "#metoo"),
        ("Korea’s", "korea's"),
        ("O’Brien", "o'brien"),
        ("U.S.", "u s"),
        ("AT&T", "at t"),
        ("-drones-", "drones"),
        ("'quoted'", "quoted"),
        ("rock 'n' roll", "rock n roll"),
        ("snake_case", "snake case"),
        ("ﬁnance", "finance"),
        ("ß", "ss"),
    ],
)
def test_normalise_keyword(typed: str, stored: str) -> None:
    assert normalise_keyword(typed) == stored


@pytest.mark.parametrize("typed", ["", "   ", "!!!", "--", "''", "…", "_"])
def test_keyword_without_letters_is_refused(typed: str) -> None:
    with pytest.raises(KeywordError) as info:
        normalise_keyword(typed)
    assert "letter or digit" in info.value.message
    assert str(MIN_KEYWORD_LEN) in info.value.message
    assert str(MAX_KEYWORD_LEN) in info.value.message


@pytest.mark.parametrize("typed", ["a", " x ", "ø", "é", "'s"])
def test_too_short_keyword_states_the_limits(typed: str) -> None:
    with pytest.raises(KeywordError) as info:
        normalise_keyword(typed)
    assert "too short" in info.value.message
    assert f"{MIN_KEYWORD_LEN} to {MAX_KEYWORD_LEN} characters" in info.value.message
    assert str(info.value) == info.value.message


def test_too_long_keyword_states_the_limits() -> None:
    with pytest.raises(KeywordError) as info:
        normalise_keyword("x" * (MAX_KEYWORD_LEN + 1))
    assert "too long" in info.value.message
    assert f"{MIN_KEYWORD_LEN} to {MAX_KEYWORD_LEN} characters" in info.value.message
    # The refusal quotes the keyword, but never the whole of a very long one.
    assert len(info.value.message) < 120


def test_limits_are_inclusive() -> None:
    assert normalise_keyword("ab") == "ab"
    assert normalise_keyword("y" * MAX_KEYWORD_LEN) == "y" * MAX_KEYWORD_LEN
    # The limit applies to the stored value, after whitespace is collapsed.
    assert normalise_keyword("a" + " " * 100 + "b") == "a b"


def test_keyword_error_is_a_value_error() -> None:
    assert issubclass(KeywordError, ValueError)


# --- parse_keywords -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "keywords"),
    [
        ("drones", ["drones"]),
        ("drones ukraine", ["drones", "ukraine"]),
        ('drones "north korea" ukraine', ["drones", "north korea", "ukraine"]),
        ("“north korea” drones", ["north korea", "drones"]),
        ("„Malmö“ «São Paulo»", ["Malmö", "São Paulo"]),
        ("north korea, drones", ["north korea", "drones"]),
        ("north   korea ,  drones ,", ["north korea", "drones"]),
        ('"Smith, John", drones', ["Smith, John", "drones"]),
        ('"Smith, John" drones', ["Smith, John", "drones"]),
        ('"north korea', ["north korea"]),
        ("Drones, drones, DRONES", ["Drones"]),
        ("Malmö, malmo", ["Malmö"]),
        ('"north  korea", North Korea', ["north korea"]),
        ("", []),
        (" , ,, ", []),
        ('""', []),
    ],
)
def test_parse_keywords(arg: str, keywords: list[str]) -> None:
    assert parse_keywords(arg) == keywords


def test_parse_keywords_keeps_invalid_ones_for_the_caller_to_refuse() -> None:
    assert parse_keywords("x, drones, !!") == ["x", "drones", "!!"]


# --- properties ---------------------------------------------------------------------

# Any text, and ASCII text on its own: field_stems takes a faster path for it.
_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
    st.text(alphabet="aBc1'+#- .\x1f\x00", max_size=20),
)


@given(_text)
def test_normalised_keyword_is_stable_and_matches_the_same_words(typed: str) -> None:
    try:
        value = normalise_keyword(typed)
    except KeywordError:
        return
    assert MIN_KEYWORD_LEN <= len(value) <= MAX_KEYWORD_LEN
    assert normalise_keyword(value) == value
    assert keyword_stems(value) == keyword_stems(typed)
