"""Plain-text helpers: HTML to text, word-boundary truncation, folding for matching."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.text import clean_text, html_to_text, plain_line, slugify, truncate_words
from storage.words import fold

# Markup-heavy text: random mixes of tags, entities, broken fragments and
# characters that tend to upset parsers.
_HTML_PIECES = st.sampled_from(
    [
        "<p>", "</p>", "<br>", "<br/>", "<b>", "</b>", "<script>", "</script>", "<style>",
        "</style>", "<a href='x'>", "</a>", "<!--", "-->", "<![CDATA[", "]]>", "<!DOCTYPE html>",
        "&amp;", "&amp;amp;", "&nbsp;", "&#0;", "&#x110000;", "&#xD800;", "&#65;", "&bogus;",
        "&", "<", ">", "\x00", "\x1b", "\r\n", "\u2028", "\ufeff", "<li>", "<table><tr><td>",
        "<?php ?>", "</", "<a", "=\"", "'", "é", "😀", "\udc80",
    ]
)  # fmt: skip
_MARKUP = st.lists(st.one_of(_HTML_PIECES, st.text(max_size=8)), max_size=40).map("".join)


def _has_control_chars(s: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") and ch != "\n" for ch in s)


class TestHtmlToText:
    @pytest.mark.parametrize(
        ("html", "text"),
        [
            ("", ""),
            ("plain words", "plain words"),
            ("<p>Hello&nbsp;<b>world</b></p>", "Hello world"),
            ("He<b>llo</b> wor<i>ld</i>", "Hello world"),
            ("<p>One</p><p>Two</p>", "One\n\nTwo"),
            ("line<br>break", "line\nbreak"),
            ("a<br/><br/><br/><br/>b", "a\n\nb"),
            ("<ul><li>one</li><li>two</li></ul>after", "one\ntwo\n\nafter"),
            ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
            ("x<script>alert('<p>hi</p>')</script>y", "xy"),
            ("x<style>p { color: red }</style>y", "xy"),
            ("x<script/>y", "xy"),
            ("<!-- note -->text", "text"),
            ("AT&amp;T &lt;b&gt; &#8364;5 &#x41;", "AT&T <b> €5 A"),
            # Escaped twice by the source: decoded once more, and only once.
            ("Tom &amp;amp; Jerry &amp;quot;quoted&amp;quot;", 'Tom & Jerry "quoted"'),
            ("&amp;amp;amp;", "&amp;"),
            ("AT&T and R&D", "AT&T and R&D"),
            ("a < b and c > d", "a < b and c > d"),
            ("  lots \t of\n\n  space  ", "lots of space"),
            ("ctrl\x00\x01\x07\x1b chars\u200b\ufeff", "ctrl chars"),
            ("<p>unclosed <b>bold", "unclosed bold"),
            ('Read more <a href="https://example.com/x', "Read more"),
            ("<script>never closed", ""),
            ("<img src='x.jpg' alt='photo'>caption", "caption"),
            ("&#0;", "\ufffd"),
        ],
    )
    def test_examples(self, html: str, text: str) -> None:
        assert html_to_text(html) == text

    @given(_MARKUP)
    def test_never_raises_and_leaves_no_control_characters(self, html: str) -> None:
        text = html_to_text(html)
        assert not _has_control_chars(text)
        assert text == text.strip()
        assert "  " not in text

    @given(st.text())
    def test_arbitrary_text(self, s: str) -> None:
        assert not _has_control_chars(html_to_text(s))

    @given(
        st.lists(st.one_of(_HTML_PIECES, st.text(max_size=30)), max_size=400).map("".join),
        st.integers(min_value=1, max_value=300),
    )
    def test_limit_reads_enough_for_truncation(self, html: str, limit: int) -> None:
        whole, partial = html_to_text(html), html_to_text(html, limit=limit)
        assert whole.startswith(partial[:limit])
        assert truncate_words(partial, limit) == truncate_words(whole, limit)
        assert truncate_words(" ".join(partial.split()), limit) == truncate_words(
            " ".join(whole.split()), limit
        )

    def test_limit_stops_reading_long_articles(self) -> None:
        article = "<p>" + "word " * 100_000 + "</p><p>THE END</p>"
        text = html_to_text(article, limit=500)
        assert 500 < len(text) < 20_000
        assert truncate_words(text, 500) == truncate_words(html_to_text(article), 500)


class TestCleanText:
    def test_collapses_whitespace_and_decodes_stray_entities(self) -> None:
        assert clean_text("  Tom &amp; Jerry\n\tagain\x07 ") == "Tom & Jerry again"

    def test_keeps_angle_brackets(self) -> None:
        assert clean_text("a <b> c") == "a <b> c"

    @given(st.text())
    def test_no_control_characters(self, s: str) -> None:
        out = clean_text(s)
        assert not _has_control_chars(out)
        assert "\n" not in out


class TestTruncateWords:
    def test_short_text_unchanged(self) -> None:
        assert truncate_words("short", 10) == "short"
        assert truncate_words("exactly10!", 10) == "exactly10!"

    def test_cuts_at_word_boundary(self) -> None:
        assert (
            truncate_words("The quick brown fox jumps over the lazy dog", 20)
            == "The quick brown fox…"
        )
        assert truncate_words("The quick brown fox jumps", 18) == "The quick brown…"

    def test_whole_last_word_kept_when_it_ends_at_the_limit(self) -> None:
        assert truncate_words("abc def ghi", 8) == "abc def…"

    def test_long_word_is_cut_inside(self) -> None:
        assert truncate_words("Supercalifragilisticexpialidocious", 10) == "Supercali…"

    def test_trailing_punctuation_dropped_before_ellipsis(self) -> None:
        assert truncate_words("one, two, three, four", 10) == "one, two…"

    def test_tiny_limits(self) -> None:
        assert truncate_words("hello", 0) == ""
        assert truncate_words("hello", -3) == ""
        assert truncate_words("hello", 1) == "…"

    @given(st.text(), st.integers(min_value=-5, max_value=600))
    def test_never_exceeds_limit(self, s: str, limit: int) -> None:
        out = truncate_words(s, limit)
        assert len(out) <= max(limit, 0)
        if len(s) <= limit:
            assert out == s
        elif limit > 0:
            assert out.endswith("…")


class TestFold:
    @pytest.mark.parametrize(
        ("text", "folded"),
        [
            ("Malmö", "malmo"),
            ("GÖTEBORG", "goteborg"),
            ("Øresund", "oresund"),
            ("Ærø", "aero"),
            ("Straße", "strasse"),
            ("Łódź", "lodz"),
            ("Đorđe", "dorde"),
            ("Þór", "thor"),
            ("İstanbul", "istanbul"),
            ("ﬁnance", "finance"),
            ("ＡＢＣ", "abc"),
            ("Crème Brûlée", "creme brulee"),
            ("plain ascii", "plain ascii"),
        ],
    )
    def test_examples(self, text: str, folded: str) -> None:
        assert fold(text) == folded

    @given(st.text())
    def test_idempotent(self, s: str) -> None:
        assert fold(fold(s)) == fold(s)

    @given(st.text())
    def test_no_combining_marks_left(self, s: str) -> None:
        assert not any(unicodedata.combining(ch) for ch in fold(s))


class TestSlugify:
    @pytest.mark.parametrize(
        ("text", "slug"),
        [
            ("Sports", "sports"),
            ("Sports & Games", "sports-games"),
            ("  Nöje / Kultur ", "noje-kultur"),
            ("Новости", ""),
            ("x" * 100, "x" * 40),
        ],
    )
    def test_examples(self, text: str, slug: str) -> None:
        assert slugify(text) == slug

    @given(st.text())
    def test_shape(self, s: str) -> None:
        slug = slugify(s)
        assert len(slug) <= 40
        assert all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in slug)
        assert not slug.startswith("-") and not slug.endswith("-")


# --- plain_line: a reader's or a feed's words on one line ------------------------------------

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("  two\n\tlines  ", "two lines"),
        (f"ab{_BIDI}c", "abc"),
        ("zero\u200bwidth\ufeff soft\u00adhyphen", "zerowidth softhyphen"),
        ("bell\x07 and nul\x00", "bell and nul"),
        ("&amp; <b>kept</b>", "&amp; <b>kept</b>"),
        ("Malmö עברית", "Malmö עברית"),
    ],
)
def test_plain_line(text: str, line: str) -> None:
    assert plain_line(text) == line


@given(st.lists(st.one_of(st.sampled_from(_BIDI + "\n\t\x00 "), st.characters())).map("".join))
def test_plain_line_leaves_no_control_or_bidi_character(text: str) -> None:
    line = plain_line(text)
    assert not set(_BIDI + "\n\t\r\x00") & set(line)
    assert all(unicodedata.category(ch) not in ("Cc", "Cs") for ch in line)
    assert line == line.strip() and "  " not in line


def test_feed_text_loses_bidi_characters_too() -> None:
    assert clean_text(f"Title {_BIDI}here") == "Title here"
    assert html_to_text(f"<p>Title {_BIDI}here</p>") == "Title here"
