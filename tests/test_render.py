"""bot.render: every message is Telegram HTML the server accepts, within 4096 characters and
100 formatting entities, with keyboards Telegram takes.

Validity and entities are judged by the fake Bot API's parser (tdlib's rules), not by
render's own measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import InlineKeyboardMarkup

from bot.callbacks import MAX_CALLBACK_BYTES, CallbackDataError, pack, unpack
from bot.render import (
    MAX_MESSAGE,
    Item,
    Rendered,
    alert,
    article_block,
    article_list,
    briefing,
    combined,
    echo,
    esc,
    fit_blocks,
    fit_lines,
    format_clock,
    format_time,
    join_names,
    linked_title,
    plural,
    reason_text,
    short,
)
from storage.models import Article
from tests.fakes.telegram_api import parse_telegram_html, validate_telegram_html

SECTIONS = {"world": "World", "sports": "Sports"}
STOCKHOLM = ZoneInfo("Europe/Stockholm")
NEW_YORK = ZoneInfo("America/New_York")
NASTY = '<b>Tom & "Jerry"</b> <script>alert(\'x\')</script> &amp; &lt; 5 > 3'
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
T = 1_741_800_000.0  # 2025-03-12 17:20 UTC


def art(
    n: int = 1, *, title: str = "A story", summary: str = "What happened.", url: str | None = None,
    section: str | None = "world", tags: tuple[str, ...] = (), published: float | None = None,
    sections: tuple[str, ...] = (),
) -> Article:
    return Article(
        id=f"id-{n}", url=f"https://news.example/a/{n}" if url is None else url, title=title,
        summary=summary, section=section, tags=tags, published_at=T + n if published is None else published,
        fetched_at=T, rowid=n, sections=sections,
    )


def visible(html_text: str) -> str:
    assert validate_telegram_html(html_text) is None, html_text
    text, _ = parse_telegram_html(html_text)
    return text


def links(html_text: str) -> list[str]:
    _, entities = parse_telegram_html(html_text)
    return [e["url"] for e in entities if e["type"] == "text_link"]


def check_message(rendered: Rendered) -> str:
    """What Telegram demands of a message: valid HTML, ≤ 4096 characters of text, ≤ 100
    entities, ≤ 3 buttons a row, callback data of 1–64 bytes. Returns the visible text."""
    text, entities = parse_telegram_html(rendered.html)
    assert len(text) <= MAX_MESSAGE and len(rendered.html) <= MAX_MESSAGE
    assert len(entities) <= 100, len(entities)
    if rendered.keyboard is not None:
        assert isinstance(rendered.keyboard, InlineKeyboardMarkup)
        for row in rendered.keyboard.inline_keyboard:
            assert 1 <= len(row) <= 3
            for button in row:
                data = button.callback_data
                assert isinstance(data, str) and 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_BYTES
                assert button.text.strip()
    return text


def buttons(rendered: Rendered) -> list[tuple[str, str]]:
    assert rendered.keyboard is not None
    return [(b.text, str(b.callback_data)) for row in rendered.keyboard.inline_keyboard for b in row]


def items(stories: Sequence[Article], reasons: tuple[str, ...] = ("section:world",)) -> list[Item]:
    return [Item(row_id=100 + n, article=a, reasons=reasons) for n, a in enumerate(stories)]


def test_escape_covers_markup_and_quotes() -> None:
    assert esc(NASTY) == (
        "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt; &lt;script&gt;alert(&#x27;x&#x27;)"
        "&lt;/script&gt; &amp;amp; &amp;lt; 5 &gt; 3"
    )
    assert visible(esc(NASTY)) == NASTY


def test_titles_and_summaries_are_shown_as_written() -> None:
    block = article_block(art(title=NASTY, summary=NASTY), SECTIONS, STOCKHOLM)
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
)  # fmt: skip
def test_only_http_links_of_sane_length_are_linked(url: str) -> None:
    html_text = article_block(art(url=url, title="Plain title"), SECTIONS, STOCKHOLM)
    assert links(html_text) == []
    assert "Plain title" in visible(html_text)


def test_untitled_and_sectionless_stories() -> None:
    text = visible(article_block(art(title="", section=None), SECTIONS, STOCKHOLM))
    assert text.startswith("News · (untitled)")
    assert visible(article_block(art(section="moon"), SECTIONS, STOCKHOLM)).startswith("Moon · ")
    both = art(section="world", sections=("world", "sports"))
    assert visible(article_block(both, SECTIONS, STOCKHOLM)).startswith("World · Sports · ")


def test_long_lists_are_cut_with_and_n_more() -> None:
    stories = [art(n, title=f"Story {n} " + "word " * 50, summary="x " * 300) for n in range(1, 41)]
    rendered = article_list("<b>Latest</b>", stories, SECTIONS, STOCKHOLM, empty="none")
    text = check_message(rendered)
    shown = len(links(rendered.html))
    assert 0 < shown < 40
    assert text.endswith(f"…and {40 - shown} more")
    # One numbered Related button per story shown, three a row.
    assert [b[0] for b in buttons(rendered)] == [f"Related {n}" for n in range(1, shown + 1)]
    assert [b[1] for b in buttons(rendered)] == [f"rel:{n}" for n in range(1, shown + 1)]


def test_lists_that_fit_are_whole() -> None:
    rendered = article_list("<b>Latest</b>", [art(1), art(2)], SECTIONS, STOCKHOLM, empty="none")
    assert "more" not in check_message(rendered) and len(links(rendered.html)) == 2
    empty = article_list("<b>T</b>", [], SECTIONS, STOCKHOLM, empty="Nothing <here>")
    assert visible(empty.html) == "T\n\nNothing <here>" and empty.keyboard is None


def test_fit_blocks_never_cuts_inside_a_block() -> None:
    blocks = [f"<b>{i}</b> " + "y" * 1000 for i in range(10)]
    out, shown = fit_blocks("<i>head</i>", blocks)
    assert len(out) <= MAX_MESSAGE
    text = visible(out)
    assert shown == text.count("y" * 1000) == 4 and text.endswith(f"…and {10 - shown} more")
    assert fit_lines(["a", "b"]) == "a\nb"
    lines = fit_lines([f"line {i} " + "z" * 90 for i in range(100)])
    assert len(lines) <= MAX_MESSAGE and visible(lines).endswith("more")


def test_fit_blocks_keeps_within_100_entities() -> None:
    blocks = [f"<b>{i}</b> <i>x</i>" for i in range(200)]
    out, shown = fit_blocks("<b>head</b>", blocks)
    _, entities = parse_telegram_html(out)
    assert len(entities) <= 100 and shown < 200 and visible(out).endswith(f"…and {200 - shown} more")


def test_alerts_stay_within_the_limits_whatever_the_feed_sent() -> None:
    huge = art(title="T" * 10_000, summary="<&>" * 10_000, url="https://news.example/" + "&" * 1000)
    reasons = tuple(f"keyword:{'k' * 60}{i}" for i in range(60))
    check_message(alert(huge, reasons, SECTIONS, STOCKHOLM, row_id=7))
    check_message(combined(items([huge] * 5, reasons), SECTIONS, STOCKHOLM))
    one = alert(art(), ("section:world", "keyword:drones"), SECTIONS, STOCKHOLM, row_id=7)
    assert check_message(one).endswith("because you follow World and drones")
    assert buttons(one) == [("Related", "rel:1"), ("Mute World", "mute:7:0"), ("Mute drones", "mute:7:1")]


def test_a_combined_message_of_100_stories() -> None:
    """At most 100 entities and 4096 characters: as many stories as fit, the rest counted,
    a numbered Related button for each one shown."""
    stories = [art(n, title=f"Story number {n} about the news") for n in range(1, 101)]
    rendered = combined(items(stories, ("section:world", "keyword:drones")), SECTIONS, STOCKHOLM)
    text = check_message(rendered)
    shown = len(links(rendered.html))
    assert 10 < shown < 100
    assert text.startswith("100 new stories for you")
    assert f"…and {100 - shown} more — /latest" in text
    assert text.endswith("Because you follow World and drones.")
    labels = [b[0] for b in buttons(rendered)]
    assert labels == [f"Related {n}" for n in range(1, shown + 1)] + ["Mute World", "Mute drones"]


def test_digests_say_what_they_are_and_sort_overnight_by_section() -> None:
    stories = [
        art(1, section="world", published=T + 10), art(2, section="sports", published=T + 20),
        art(3, section="world", published=T + 30),
    ]  # fmt: skip
    away = check_message(combined(items(stories), SECTIONS, STOCKHOLM, digest="away"))
    assert away.startswith("While you were away: 3 stories")
    night = combined(items(stories), SECTIONS, STOCKHOLM, digest="overnight", quiet="22:00–07:00")
    assert check_message(night).startswith("During your quiet hours (22:00–07:00): 3 stories")
    # Quiet hours turned off since the stories were held: no span to name.
    assert check_message(combined(items(stories), SECTIONS, STOCKHOLM, digest="overnight")).startswith(
        "During your quiet hours: 3 stories")
    # Held overnight: by section (the first seen first), newest first within it.
    assert [links(night.html)] == [[f"https://news.example/a/{n}" for n in (3, 1, 2)]]


def test_briefings() -> None:
    stories = [(art(n, title=f"Story {n}"), "section:world") for n in range(1, 60)] + [
        (art(99, title="Drones over Malmö"), "keyword:drones")
    ]
    rendered = briefing(stories, SECTIONS, STOCKHOLM, when="07:30")
    text = check_message(rendered)
    assert text.startswith("Your briefing, 07:30: 60 stories")
    assert text.split("\n")[2].startswith("1. World · Drones over Malmö")  # keywords first
    assert "…and" in text and text.endswith("more — /latest")
    single = briefing(stories[:1], SECTIONS, STOCKHOLM, when="18:00")
    assert check_message(single).startswith("Your briefing, 18:00: 1 story")
    nothing = briefing([], SECTIONS, STOCKHOLM, when="07:30")
    assert check_message(nothing).startswith("Your briefing, 07:30\n\nNothing new")


def test_bidi_and_control_characters_are_removed_from_titles_and_echoes() -> None:
    title = f"Evil {BIDI}title\x00\x07 here"
    story = art(title=title, summary=f"Summary {BIDI}text")
    for rendered in (
        alert(story, ("section:world",), SECTIONS, STOCKHOLM, row_id=1),
        combined(items([story] * 4), SECTIONS, STOCKHOLM),
        article_list(f"<b>{echo(title)}</b>", [story], SECTIONS, STOCKHOLM, empty="none"),
        briefing([(story, "section:world")], SECTIONS, STOCKHOLM, when="07:30"),
    ):
        text = check_message(rendered)
        assert not set(BIDI + "\x00\x07") & set(rendered.html), rendered.html
        assert "Evil title here" in text
    assert echo(f"a{BIDI}b\u200bc") == "abc"
    assert short(f"x{BIDI}y", 10) == "xy"


def test_times_carry_the_zone() -> None:
    summer = 1_751_371_200.0  # 2025-07-01 12:00 UTC
    assert format_time(T, STOCKHOLM) == "12 Mar 2025 18:20 CET"
    assert format_time(summer, STOCKHOLM) == "01 Jul 2025 14:00 CEST"
    assert format_time(T, NEW_YORK) == "12 Mar 2025 13:20 EDT"
    assert format_clock(summer, NEW_YORK) == "08:00 EDT"
    rendered = alert(art(published=T), ("section:world",), SECTIONS, NEW_YORK, row_id=1)
    assert "12 Mar 2025 13:20 EDT" in check_message(rendered)


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 stories"), (1, "1 story"), (2, "2 stories"), (21, "21 stories")]
)
def test_plurals(count: int, text: str) -> None:
    assert plural(count, "story", "stories") == text
    assert plural(count, "alert") == text.replace("stories", "alerts").replace("story", "alert")


def test_one_story_combined_says_one() -> None:
    assert check_message(combined(items([art()]), SECTIONS, STOCKHOLM)).startswith("1 new story for you")


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


@settings(max_examples=150, deadline=None)
@given(
    title=st.text(max_size=400), summary=st.text(max_size=800), url=st.text(max_size=100),
    reasons=st.lists(st.text(min_size=1, max_size=70), max_size=5),
    count=st.integers(1, 100),
)
def test_any_story_renders_to_a_message_telegram_takes(
    title: str, summary: str, url: str, reasons: list[str], count: int
) -> None:
    story = art(title=title, summary=summary, url="https://x.example/" + url)
    for rendered in (
        alert(story, tuple(reasons), SECTIONS, STOCKHOLM, row_id=2**62),
        combined(items([story] * count, tuple(reasons)), SECTIONS, STOCKHOLM),
        article_list(f"<b>{echo(title)}</b>", [story] * 20, SECTIONS, STOCKHOLM, empty="none"),
        briefing([(story, r) for r in reasons] or [(story, "section:world")], SECTIONS, STOCKHOLM, when="07:30"),
    ):
        check_message(rendered)


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
