"""bot.render: every message is Telegram HTML the server accepts, within 4096 characters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.callbacks import MAX_CALLBACK_BYTES, CallbackDataError, pack, unpack
from bot.render import (
    MAX_MESSAGE,
    alert_html,
    article_block,
    article_list,
    combined_alert_html,
    echo,
    esc,
    fit_blocks,
    fit_lines,
    join_names,
    linked_title,
    reason_text,
    short,
)
from storage.models import Article
from tests.fakes.telegram_api import parse_telegram_html, validate_telegram_html

SECTIONS = {"world": "World", "sports": "Sports"}
NASTY = '<b>Tom & "Jerry"</b> <script>alert(\'x\')</script> &amp; &lt; 5 > 3'


def art(
    n: int = 1, *, title: str = "A story", summary: str = "What happened.", url: str | None = None,
    section: str | None = "world", tags: tuple[str, ...] = (),
) -> Article:
    return Article(
        id=f"id-{n}", url=f"https://news.example/a/{n}" if url is None else url, title=title,
        summary=summary, section=section, tags=tags, published_at=1_741_800_000.0 + n,
        fetched_at=1_741_800_000.0,
    )


def visible(html_text: str) -> str:
    assert validate_telegram_html(html_text) is None, html_text
    text, _ = parse_telegram_html(html_text)
    return text


def links(html_text: str) -> list[str]:
    _, entities = parse_telegram_html(html_text)
    return [e["url"] for e in entities if e["type"] == "text_link"]


def test_escape_covers_markup_and_quotes() -> None:
    assert esc(NASTY) == (
        "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt; &lt;script&gt;alert(&#x27;x&#x27;)"
        "&lt;/script&gt; &amp;amp; &amp;lt; 5 &gt; 3"
    )
    assert visible(esc(NASTY)) == NASTY


def test_titles_and_summaries_are_shown_as_written() -> None:
    block = article_block(art(title=NASTY, summary=NASTY), SECTIONS)
    text = visible(block)
    assert text.count(NASTY) == 2
    assert text.startswith("World · ")


def test_quotes_and_ampersands_in_urls_stay_inside_the_link() -> None:
    url = 'https://news.example/a?x=1&y="2"&z=\'3\'<b>'
    html_text = linked_title(art(url=url, title="T"))
    assert links(html_text) == [url]
    assert visible(html_text) == "T"


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "ftp://news.example/a", "news.example/a", "", "tg://resolve?domain=x",
            "https://news.example/" + "x" * 5000]
)
def test_only_http_links_of_sane_length_are_linked(url: str) -> None:
    html_text = article_block(art(url=url, title="Plain title"), SECTIONS)
    assert links(html_text) == []
    assert "Plain title" in visible(html_text)


def test_untitled_and_sectionless_stories() -> None:
    text = visible(article_block(art(title="", section=None), SECTIONS))
    assert text.startswith("News · (untitled)")
    assert visible(article_block(art(section="moon"), SECTIONS)).startswith("Moon · ")


def test_long_lists_are_cut_with_and_n_more() -> None:
    stories = [art(n, title=f"Story {n} " + "word " * 50, summary="x " * 300) for n in range(40)]
    html_text = article_list("<b>Latest</b>", stories, SECTIONS, empty="none")
    assert len(html_text) <= MAX_MESSAGE
    text = visible(html_text)
    shown = len(links(html_text))
    assert 0 < shown < 40
    assert text.endswith(f"…and {40 - shown} more")


def test_lists_that_fit_are_whole() -> None:
    html_text = article_list("<b>Latest</b>", [art(1), art(2)], SECTIONS, empty="none")
    assert "more" not in visible(html_text) and len(links(html_text)) == 2
    assert visible(article_list("<b>T</b>", [], SECTIONS, empty="Nothing <here>")) == "T\n\nNothing <here>"


def test_fit_blocks_never_cuts_inside_a_block() -> None:
    blocks = [f"<b>{i}</b> " + "y" * 1000 for i in range(10)]
    out = fit_blocks("<i>head</i>", blocks)
    assert len(out) <= MAX_MESSAGE
    text = visible(out)
    shown = text.count("y" * 1000)
    assert shown == 4 and text.endswith(f"…and {10 - shown} more")
    assert fit_lines(["a", "b"]) == "a\nb"
    lines = fit_lines([f"line {i} " + "z" * 90 for i in range(100)])
    assert len(lines) <= MAX_MESSAGE and visible(lines).endswith("more")


def test_alerts_stay_within_the_limit_whatever_the_feed_sent() -> None:
    huge = art(title="T" * 10_000, summary="<&>" * 10_000, url="https://news.example/" + "&" * 1000)
    reasons = [f"keyword:{'k' * 60}{i}" for i in range(60)]
    for html_text in (alert_html(huge, reasons, SECTIONS), combined_alert_html([(huge, reasons)] * 5, SECTIONS)):
        assert len(html_text) <= MAX_MESSAGE
        visible(html_text)
    alert = visible(alert_html(art(), ["section:world", "keyword:drones"], SECTIONS))
    assert alert.endswith("because you follow World and drones")


def test_many_reasons_are_summed_up() -> None:
    text = visible(reason_text([f"keyword:word{i}" for i in range(200)], SECTIONS))
    assert text.startswith("because you follow word0, word1") and "more" in text
    assert len(text) < 1000
    assert visible(reason_text(["section:sports"], SECTIONS)) == "because you follow Sports"
    assert reason_text([], SECTIONS) == ""


def test_join_names_and_echo() -> None:
    assert visible(join_names(["a<b", "c&d"])) == "a<b, c&d"
    joined = visible(join_names([f"n{i}" for i in range(1000)], budget=100))
    assert joined.endswith("more") and len(joined) < 150
    assert visible(join_names(["x" * 5000])) == "x" * 63 + "…"
    assert visible(echo("a\x00b\n\n c\x1f <d>")) == "ab c <d>"
    assert 40 < len(visible(echo("w " * 1000, 50))) <= 50


def test_short_cuts_at_a_word() -> None:
    assert short("one two three four", 12) == "one two…"
    assert short("  spaced \n out  ", 50) == "spaced out"
    assert len(short("x" * 100, 10)) == 10


@settings(max_examples=200, deadline=None)
@given(
    title=st.text(max_size=400), summary=st.text(max_size=800), url=st.text(max_size=100),
    reasons=st.lists(st.text(max_size=70), max_size=5),
)
def test_any_story_renders_to_valid_html(title: str, summary: str, url: str, reasons: list[str]) -> None:
    story = art(title=title, summary=summary, url="https://x.example/" + url)
    for html_text in (
        alert_html(story, reasons, SECTIONS),
        combined_alert_html([(story, reasons)] * 3, SECTIONS),
        article_list(f"<b>{echo(title)}</b>", [story] * 20, SECTIONS, empty="none"),
    ):
        assert len(html_text) <= MAX_MESSAGE
        visible(html_text)


def test_callback_data_is_at_most_64_bytes() -> None:
    assert pack("rel", 2**63 - 1) == f"rel:{2**63 - 1}"
    assert pack("sec", "x" * 60) == "sec:" + "x" * 60
    with pytest.raises(CallbackDataError):
        pack("sec", "x" * 61)
    with pytest.raises(CallbackDataError):
        pack("sec", "é" * 31)  # 62 bytes of UTF-8 after 4 of prefix
    with pytest.raises(CallbackDataError):
        pack("mute", "1:2", 3)  # a separator inside a part
    assert unpack("mute:1:2", "mute", 2) == ["1", "2"]
    assert unpack("mute:1", "mute", 2) is None and unpack("x" * MAX_CALLBACK_BYTES, "mute", 2) is None
